"""_core.hub_turns(): the "has the hub turned" signal that a watchdog on
another OS thread reads (passes, time of the last poll, polling now)."""

import threading
import time

import ptsevent
from ptsevent import _core


def _sample_from_another_thread(ident, at):
    """hub_turns(ident) read by a real OS thread after `at` seconds."""
    out = {}

    def watch():
        time.sleep(at)
        out["turns"] = _core.hub_turns(ident)
        out["now"] = time.monotonic()

    t = threading.Thread(target=watch)
    t.start()
    return t, out


def test_a_thread_without_a_hub_has_no_turns():
    out = {}

    def run():
        out["self"] = _core.hub_turns()
        out["ident"] = _core.hub_turns(threading.get_ident())

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert out == {"self": None, "ident": None}
    assert _core.hub_turns(threading.get_ident() + 12345) is None


def test_passes_grow_as_the_hub_turns():
    ptsevent.sleep(0)
    passes, last, polling = _core.hub_turns()
    for _ in range(5):
        ptsevent.sleep(0.002)
    passes2, last2, polling2 = _core.hub_turns()
    assert passes2 >= passes + 5
    assert last < last2 <= time.monotonic()
    assert polling is polling2 is False  # the asking tasklet runs


def test_a_waiting_hub_is_polling_and_a_held_one_is_not():
    ident = threading.get_ident()
    ptsevent.sleep(0)
    # Idle: the main tasklet sleeps cooperatively; the hub waits in its poll.
    t, idle = _sample_from_another_thread(ident, 0.15)
    ptsevent.sleep(0.3)
    t.join()
    assert idle["turns"][2] is True
    # Held: the main tasklet blocks the thread (a blocking sleep): no turn.
    before = _core.hub_turns()
    t, held = _sample_from_another_thread(ident, 0.3)
    time.sleep(0.5)
    t.join()
    passes, last, polling = held["turns"]
    assert polling is False
    assert passes == before[0]
    assert held["now"] - last >= 0.25
    ptsevent.sleep(0)
    assert _core.hub_turns()[0] > passes


def test_another_threads_hub_is_read_by_its_ident():
    ready = threading.Event()
    stop = threading.Event()
    info = {}

    def hub_thread():
        ptsevent.sleep(0)
        info["ident"] = threading.get_ident()
        ready.set()
        while not stop.is_set():
            ptsevent.sleep(0.01)

    t = threading.Thread(target=hub_thread)
    t.start()
    ready.wait(5)
    first = _core.hub_turns(info["ident"])
    time.sleep(0.1)
    second = _core.hub_turns(info["ident"])
    stop.set()
    t.join()
    assert first is not None and second[0] > first[0]
    # Its hub is gone with the thread.
    assert _core.hub_turns(info["ident"]) is None
