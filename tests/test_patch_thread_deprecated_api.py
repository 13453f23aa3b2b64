"""patch_thread keeps threading's deprecated aliases as the standard
library has them: they warn, then answer for the calling tasklet thread.
Each test runs in an interpreter of its own (tests/_patched.py)."""

from _patched import run_json


def test_current_thread_alias_warns_and_names_the_tasklet_thread():
    out = run_json("""
import json, warnings
import ptsevent.patch as P
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    P.patch_all()
import threading
seen = {}
def body():
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        cur = threading.currentThread()
    seen["same"] = cur is threading.current_thread()
    seen["name"] = cur.name
    seen["warned"] = [str(x.category.__name__) for x in w]
t = threading.Thread(target=body, name="worker")
t.start()
t.join()
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    main = threading.currentThread()
print(json.dumps({"seen": seen,
                  "main": main is threading.main_thread(),
                  "main_warned": [x.category.__name__ for x in w]}))
""")
    assert out["seen"] == {"same": True, "name": "worker",
                           "warned": ["DeprecationWarning"]}
    assert out["main"] is True
    assert out["main_warned"] == ["DeprecationWarning"]
