"""The runner of CPython's test modules: python -m ptsevent.testing.stdlib.

Each test runs the runner as a user would (a subprocess, its JSON report)
on a small test module written here, whose tests pass or fail depending on
whether ptsevent's socket is installed, and on a slice of test_ssl.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from ptsevent.testing import stdlib

SAMPLE = "ptsevent_runner_sample"

SAMPLE_SOURCE = textwrap.dedent('''
    import socket
    import time
    import unittest

    # What `socket.socket` was when this module (and so test.support, which
    # the runner imports first) was imported.
    SOCKET_AT_IMPORT = socket.socket


    class Sample(unittest.TestCase):
        def test_passes(self):
            pass

        def test_needs_the_standard_socket(self):
            # passes unpatched, fails with ptsevent: a regression
            self.assertIs(socket.socket.__module__, "socket")

        def test_cooperative_at_import(self):
            import ptsevent.socket
            self.assertIs(SOCKET_AT_IMPORT, ptsevent.socket.socket)

        def test_fails_everywhere(self):
            self.fail("fails unpatched too: not counted against ptsevent")

        def test_listed(self):
            pass

        @unittest.skip("the module's own reason")
        def test_own_skip(self):
            pass

        def test_subtest_fails_with_ptsevent(self):
            for i in range(3):
                with self.subTest(i=i):
                    if i == 2:
                        self.assertIs(socket.socket.__module__, "socket")

        def test_context_wraps_cooperatively(self):
            import ssl
            import ptsevent.ssl
            ctx = ssl.create_default_context()
            with socket.socket() as raw, ctx.wrap_socket(
                    raw, server_hostname="localhost",
                    do_handshake_on_connect=False) as wrapped:
                self.assertIsInstance(wrapped, ptsevent.ssl.SSLSocket)

        def test_hangs(self):
            time.sleep(120)
''')


@pytest.fixture
def sample_dir(tmp_path):
    (tmp_path / f"{SAMPLE}.py").write_text(SAMPLE_SOURCE)
    return tmp_path


def run_runner(args, sample_dir, tmp_path, timeout=120):
    report = tmp_path / "report.json"
    if args[0] == SAMPLE and "--install" not in args:
        args = [*args, "--install", "socket"]  # ptsevent's socket is enough
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in [str(sample_dir), os.environ.get("PYTHONPATH")] if p))
    proc = subprocess.run(
        [sys.executable, "-m", "ptsevent.testing.stdlib", "--json", str(report),
         *args],
        capture_output=True, text=True, timeout=timeout, env=env)
    data = json.loads(report.read_text()) if report.exists() else None
    return proc, data


def outcomes(data, mode):
    (run,) = [r for r in data["runs"] if r["mode"] == mode]
    return run


def sample_id(name):
    return f"{SAMPLE}.Sample.{name}"


def test_regression_beyond_baseline_exits_nonzero(sample_dir, tmp_path):
    proc, data = run_runner(
        [SAMPLE, "-k", "*Sample.test_[!hc]*", "-k", "*test_cooperative_at_import"], sample_dir, tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    base, mine = outcomes(data, "baseline"), outcomes(data, "ptsevent")
    assert base["outcomes"][sample_id("test_needs_the_standard_socket")] == "passed"
    assert mine["outcomes"][sample_id("test_needs_the_standard_socket")] == "failed"
    # a failure of the baseline's own is not a regression
    assert base["outcomes"][sample_id("test_fails_everywhere")] == "failed"
    assert f"REGRESSION {sample_id('test_needs_the_standard_socket')}" in proc.stdout
    assert f"REGRESSION {sample_id('test_subtest_fails_with_ptsevent')}" in proc.stdout
    assert f"REGRESSION {sample_id('test_fails_everywhere')}" not in proc.stdout
    # the table: tests, passed, skipped, failed, errors, skipped+, failed+
    row = next(line.split() for line in proc.stdout.splitlines()
               if line.startswith(SAMPLE) and " ptsevent " in line)
    assert row[2:9] == ["7", "3", "1", "3", "0", "0", "2"], proc.stdout


def test_installed_before_the_test_module_is_imported(sample_dir, tmp_path):
    proc, data = run_runner(
        [SAMPLE, "-k", "test_cooperative_at_import", "-k", "test_passes",
         "--full-baseline"], sample_dir, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tid = sample_id("test_cooperative_at_import")
    assert outcomes(data, "baseline")["outcomes"][tid] == "failed"
    assert outcomes(data, "ptsevent")["outcomes"][tid] == "passed"
    assert "socket.socket" in outcomes(data, "ptsevent")["installed"]
    assert outcomes(data, "baseline")["installed"] == []


def test_skip_entry_is_applied_by_id_with_its_reason(sample_dir, tmp_path):
    why = "stands in for a test that cannot work cooperatively"
    proc, data = run_runner(
        [SAMPLE, "-k", "test_listed", "-k", "test_own_skip",
         "--skip", f"{sample_id('test_listed')}={why}"], sample_dir, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    mine = outcomes(data, "ptsevent")
    assert mine["outcomes"][sample_id("test_listed")] == "skipped"
    assert why in mine["details"][sample_id("test_listed")]
    assert mine["details"][sample_id("test_own_skip")] == "the module's own reason"
    assert f"skipped beyond baseline {sample_id('test_listed')}" in proc.stdout


def test_skip_entry_without_a_reason_is_rejected(sample_dir, tmp_path):
    proc, data = run_runner(
        [SAMPLE, "--skip", sample_id("test_listed")], sample_dir, tmp_path)
    assert proc.returncode == 2
    assert "ID=REASON" in proc.stderr
    proc, data = run_runner(
        [SAMPLE, "--skip", f"{sample_id('test_listed')}= "], sample_dir, tmp_path)
    assert proc.returncode == 2
    assert "must say why" in proc.stderr
    with pytest.raises(ValueError):
        stdlib.Skip("test_ssl.ThreadedTests.test_echo", "")
    for entry in stdlib.SKIPS:  # the built-in list holds only explained entries
        assert entry.test.startswith("test_") and len(entry.why) >= 10


def test_time_limit_names_the_test_that_hung(sample_dir, tmp_path):
    proc, data = run_runner(
        [SAMPLE, "-k", "test_hangs", "--timeout", "4"], sample_dir, tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    mine = outcomes(data, "ptsevent")
    assert not mine["finished"]
    assert mine["problem"] == "timed out after 4 s"
    assert mine["outcomes"][sample_id("test_hangs")] == "error"
    assert "while this test ran" in mine["details"][sample_id("test_hangs")]


# The tests issue "Cooperative TLS" names: the CVE-2023-40217 defence, and
# the ones other green libraries skip as hanging.
SSL_TARGETS = (
    "test_ssl.TestPreHandshakeClose.test_https_client_non_tls_response_ignored",
    "test_ssl.TestPreHandshakeClose.test_preauth_data_to_tls_client",
    "test_ssl.TestPreHandshakeClose.test_preauth_data_to_tls_server",
    "test_ssl.ThreadedTests.test_nonblocking_send",
    "test_ssl.ThreadedTests.test_socketserver",
    "test_ssl.ThreadedTests.test_handshake_timeout",
    "test_ssl.ThreadedTests.test_sni_callback",
    "test_ssl.ContextTests.test_sni_callback",
    "test_ssl.SimpleBackgroundTests.test_get_server_certificate",
)


def test_ssl_targets_pass_with_ptsevent_ssl(tmp_path):
    pytest.importorskip("test.test_ssl")
    args = ["test_ssl"]
    for tid in SSL_TARGETS:
        args += ["-k", "*." + tid]
    proc, data = run_runner(args, tmp_path, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    mine = outcomes(data, "ptsevent")
    assert "ssl.SSLContext.sslsocket_class" in mine["installed"]
    assert mine["outcomes"] == {tid: "passed" for tid in SSL_TARGETS}, mine


def test_contexts_made_by_the_standard_module_wrap_cooperatively(
        sample_dir, tmp_path):
    proc, data = run_runner(
        [SAMPLE, "-k", "test_context_wraps_cooperatively", "--install",
         "ssl,socket", "--full-baseline"], sample_dir, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tid = sample_id("test_context_wraps_cooperatively")
    assert outcomes(data, "baseline")["outcomes"][tid] == "failed"
    assert outcomes(data, "ptsevent")["outcomes"][tid] == "passed"


def test_baseline_reruns_only_what_did_not_pass_with_ptsevent(
        sample_dir, tmp_path):
    args = [SAMPLE, "-k", "test_passes", "-k", "test_needs_the_standard_socket",
            "-k", "test_fails_everywhere"]
    proc, data = run_runner(args, sample_dir, tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    base = outcomes(data, "baseline")
    assert base["outcomes"] == {
        sample_id("test_needs_the_standard_socket"): "passed",
        sample_id("test_fails_everywhere"): "failed"}
    assert "REGRESSION " + sample_id("test_needs_the_standard_socket") \
        in proc.stdout
    assert "only the tests that did not pass with ptsevent" in proc.stdout
    # --full-baseline runs every test unpatched
    proc, data = run_runner([*args, "--full-baseline"], sample_dir, tmp_path)
    assert sample_id("test_passes") in outcomes(data, "baseline")["outcomes"]
    # nothing left to rerun: no baseline child at all
    proc, data = run_runner([SAMPLE, "-k", "test_passes"], sample_dir, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    base = outcomes(data, "baseline")
    assert base["outcomes"] == {} and base["finished"] and base["log"] == ""


def test_cut_ptsevent_run_gets_a_whole_baseline(sample_dir, tmp_path):
    proc, data = run_runner(
        [SAMPLE, "-k", "test_hangs", "-k", "test_cooperative_at_import",
         "--timeout", "4"], sample_dir, tmp_path)
    tid = sample_id("test_cooperative_at_import")  # runs before test_hangs
    assert outcomes(data, "ptsevent")["outcomes"][tid] == "passed"
    assert outcomes(data, "baseline")["outcomes"][tid] == "failed"
