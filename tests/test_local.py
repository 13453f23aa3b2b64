"""ptsevent.local: tasklet-local data.

The threading.local contract (isolation, __init__ arguments, __slots__,
__dict__, errors) is parametrized over ptsevent.local used from tasklets and
threading.local used from threads, so a difference in behaviour shows up as
a failure of the ptsevent variant. Freeing, greenlet reuse, switches inside
__init__ and OS threads concern ptsevent alone.
"""

import gc
import sys
import threading
import weakref

import pytest

import ptsevent
from ptsevent import local


class MyError(Exception):
    pass


IMPL = [pytest.param(local, id="ptsevent"), pytest.param(threading.local, id="threading")]


@pytest.fixture(params=IMPL)
def base(request):
    return request.param


def elsewhere(base, fn, *args):
    """Run fn(*args) in another tasklet (ptsevent) or thread (threading) and
    return its result or raise its exception."""
    if base is local:
        return ptsevent.spawn(fn, *args).get(timeout=5)
    box = {}

    def run():
        try:
            box["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - raised below
            box["error"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join(5)
    assert not t.is_alive()
    if "error" in box:
        raise box["error"]
    return box["value"]


# --- the threading.local contract ----------------------------------------------


def test_exported_from_the_package():
    assert ptsevent.local is local
    assert "local" in ptsevent.__all__
    assert sys.modules["ptsevent._local"].local is local


def test_attributes_are_separate_per_tasklet(base):
    data = base()
    data.x = 1

    def other():
        seen = hasattr(data, "x")
        data.x = 2
        return seen, data.x, sorted(vars(data))

    assert elsewhere(base, other) == (False, 2, ["x"])
    assert data.x == 1
    assert data.__dict__ == {"x": 1}


def test_missing_attributes_raise_attribute_error(base):
    data = base()
    with pytest.raises(AttributeError):
        data.nope
    with pytest.raises(AttributeError):
        del data.nope
    assert getattr(data, "nope", "default") == "default"
    data.y = 3
    del data.y
    assert not hasattr(data, "y")


def test_init_arguments_without_init_raise_type_error(base):
    with pytest.raises(TypeError):
        base(1)
    with pytest.raises(TypeError):
        base(key="value")


def test_subclass_init_runs_in_each_tasklet_with_the_same_arguments(base):
    calls = []

    class Data(base):
        def __init__(self, a, b=0):
            calls.append((a, b))
            self.total = a + b

    data = Data(1, b=2)
    assert calls == [(1, 2)] and data.total == 3

    def other():
        data.total += 10
        return data.total

    assert elsewhere(base, other) == 13
    assert elsewhere(base, other) == 13
    assert calls == [(1, 2)] * 3
    assert data.total == 3


def test_init_that_raises_is_run_again_on_the_next_access(base):
    attempts = []

    class Flaky(base):
        def __init__(self):
            attempts.append(1)
            if len(attempts) == 2:
                raise MyError("first try in the other tasklet")
            self.ok = True

    data = Flaky()

    def other():
        with pytest.raises(MyError):
            data.ok
        return data.ok

    assert elsewhere(base, other) is True
    assert len(attempts) == 3


def test_dict_is_per_tasklet_and_read_only(base):
    data = base()
    data.a = 1
    with pytest.raises(AttributeError):
        data.__dict__ = {}
    with pytest.raises(AttributeError):
        del data.__dict__
    data.__dict__["b"] = 2
    assert data.b == 2
    assert elsewhere(base, lambda: dict(data.__dict__)) == {}


def test_slots_of_a_subclass_are_shared(base):
    class Slotted(base):
        __slots__ = ("shared",)

    data = Slotted()
    data.shared = "common"
    data.own = "mine"

    def other():
        return data.shared, hasattr(data, "own")

    assert elsewhere(base, other) == ("common", False)


def test_class_attributes_methods_and_properties(base):
    class Counter(base):
        step = 5

        def bump(self):
            self.n = getattr(self, "n", 0) + self.step
            return self.n

        @property
        def double(self):
            return self.n * 2

    data = Counter()
    assert data.bump() == 5 and data.double == 10
    with pytest.raises(AttributeError):
        data.double = 1  # property without a setter
    data.step = 1  # instance attribute shadows the class one, per tasklet
    assert data.bump() == 6
    assert elsewhere(base, lambda: (data.bump(), data.bump())) == (5, 10)
    assert Counter.step == 5


def test_getattr_hook_of_a_subclass_is_used(base):
    class Defaulting(base):
        def __getattr__(self, name):
            return f"default-{name}"

    data = Defaulting()
    data.set = "value"
    assert data.set == "value"
    assert data.other == "default-other"


def test_supports_weak_references(base):
    data = base()
    ref = weakref.ref(data)
    assert ref() is data
    del data
    gc.collect()
    assert ref() is None


# --- ptsevent only --------------------------------------------------------------


def test_tasklets_reusing_a_worker_greenlet_do_not_share_data():
    data = local()
    seen = []

    def job(i):
        seen.append(getattr(data, "i", None))
        data.i = i

    for i in range(5):
        ptsevent.spawn(job, i).join()
    assert seen == [None] * 5


def test_concurrent_tasklets_each_keep_their_value_across_switches():
    data = local()

    def job(i):
        data.i = i
        for _ in range(3):
            ptsevent.sleep(0)
            assert data.i == i
        return data.i

    ts = [ptsevent.spawn(job, i) for i in range(20)]
    assert [t.get() for t in ts] == list(range(20))


def test_init_that_switches_does_not_mix_tasklets():
    class Slow(local):
        def __init__(self, tag):
            self.owner = ptsevent.getcurrent()
            ptsevent.sleep(0.01)  # others touch the object meanwhile
            self.after = ptsevent.getcurrent()

    data = Slow("t")

    def job():
        return data.owner is data.after is ptsevent.getcurrent()

    ts = [ptsevent.spawn(job) for _ in range(5)]
    assert all(t.get(timeout=5) for t in ts)


def test_data_is_freed_with_the_tasklet():
    data = local()

    class Payload:
        pass

    refs = []

    def job():
        p = Payload()
        refs.append(weakref.ref(p))
        data.payload = p

    ptsevent.spawn(job).join()  # the Tasklet object is dropped here
    assert refs[0]() is None
    # Only the creator (this tasklet) still holds a dict for it.
    assert list(data._local__impl.tasklets) == [ptsevent.getcurrent()]


def test_cycle_through_the_tasklet_is_collected():
    data = local()
    refs = []

    def job():
        me = ptsevent.getcurrent()
        data.me = me  # tasklet -> its dict -> tasklet
        refs.append(weakref.ref(me))

    ptsevent.spawn(job).join()
    gc.collect()
    assert refs[0]() is None


def test_freeing_the_local_removes_its_data_from_live_tasklets():
    me = ptsevent.getcurrent()
    before = set(vars(me))
    data = local()
    data.x = [1]
    assert len(set(vars(me)) - before) == 1
    del data
    gc.collect()
    assert set(vars(me)) - before == set()


def test_each_os_thread_has_its_own_data():
    data = local()
    data.who = "main"
    results = {}

    def thread_main(name):
        results[name] = [hasattr(data, "who")]
        data.who = name
        t = ptsevent.spawn(lambda: hasattr(data, "who"))
        results[name] += [t.get(timeout=5), data.who]

    threads = [threading.Thread(target=thread_main, args=(f"t{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert results == {f"t{i}": [False, False, f"t{i}"] for i in range(3)}
    assert data.who == "main"
