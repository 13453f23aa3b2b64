# The README's two commands: `make run` and `make test`. Both set up what is
# missing first (Debian packages, the .venv, the package built from source).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ASAN_VENV := .venv-asan
ASAN_PY := $(ASAN_VENV)/bin/python
DEB_PACKAGES := libevent-dev node-llhttp pkg-config wrk dnsmasq g++ cmake
BUILD_DEPS := "scikit-build-core>=0.10" "nanobind>=2.4" "greenlet>=3" ninja
SOURCES := $(shell find src CMakeLists.txt pyproject.toml -type f \
             -not -path '*/__pycache__/*' 2>/dev/null)

.PHONY: setup run test test-asan bench clean debs

setup: debs $(VENV)/.built

debs:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" \
	    || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Built without isolation so that CMake sees the greenlet this venv runs.
$(VENV)/.built: $(VENV)/bin/python $(SOURCES)
	$(PY) -m pip install -q $(BUILD_DEPS)
	$(PY) -m pip install -q --no-build-isolation -e '.[test]'
	touch $@

run: setup
	$(PY) examples/demo.py

test: setup $(ASAN_VENV)/.built
	$(PY) -m pytest -q tests
	$(MAKE) --no-print-directory test-asan

# The core tests again with the extension built under AddressSanitizer and
# UBSan, in a venv of its own (greenlet's stack copying needs
# detect_stack_use_after_return=0; the interpreter itself is not
# instrumented, so libasan is preloaded).
$(ASAN_VENV)/bin/python:
	$(PYTHON) -m venv $(ASAN_VENV)
	$(ASAN_PY) -m pip install -q --upgrade pip

$(ASAN_VENV)/.built: $(ASAN_VENV)/bin/python $(SOURCES)
	$(ASAN_PY) -m pip install -q $(BUILD_DEPS) pytest pytest-timeout
	PTSEVENT_SANITIZE=ON $(ASAN_PY) -m pip install -q --no-build-isolation \
	  --config-settings=build-dir=build/asan .
	touch $@

test-asan: $(ASAN_VENV)/.built
	cd tests && LD_PRELOAD="$$(g++ -print-file-name=libasan.so) $$(g++ -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_stack_use_after_return=0:detect_leaks=0:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  PYTHONMALLOC=malloc ../$(ASAN_PY) -m pytest -q -p no:cacheprovider \
	  -o addopts="" --rootdir=. .

bench: setup
	$(PY) -m pip install -q --no-build-isolation -e '.[test,bench]'
	$(PY) bench/switch.py
	$(PY) bench/echo.py --duration 2

clean:
	rm -rf build $(VENV) $(ASAN_VENV)
