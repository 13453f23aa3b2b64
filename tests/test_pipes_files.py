"""ptsevent.os: cooperative pipes, FIFOs and files."""

import fcntl
import io
import os
import time

import pytest

import ptsevent
from ptsevent import os as pos


def nonblocking(fd):
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK)


def test_pipe_ends_are_nonblocking_and_read_waits_only_the_tasklet():
    r, w = pos.pipe()
    try:
        assert nonblocking(r) and nonblocking(w)
        ticks = []

        def ticker():
            for _ in range(5):
                ticks.append(1)
                ptsevent.sleep(0.005)
            pos.write(w, b"data")

        ptsevent.spawn(ticker)
        assert pos.read(r, 10) == b"data"
        assert len(ticks) == 5
    finally:
        os.close(r)
        os.close(w)


def test_write_to_a_full_pipe_waits_for_the_reader():
    r, w = pos.pipe()
    try:
        payload = b"x" * (1 << 20)
        got = bytearray()

        def reader():
            while len(got) < len(payload):
                got.extend(pos.read(r, 65536))

        t = ptsevent.spawn(reader)
        view = memoryview(payload)
        while view:
            view = view[pos.write(w, view):]
        t.join(5)
        assert bytes(got) == payload
    finally:
        os.close(r)
        os.close(w)


def test_fdopen_text_and_binary_over_a_pipe():
    r, w = pos.pipe()
    fr = pos.fdopen(r, "r", encoding="utf-8")
    fw = pos.fdopen(w, "wb")
    assert isinstance(fw, io.BufferedWriter)

    def writer():
        fw.write("héllo\nwörld\n".encode())
        fw.flush()
        ptsevent.sleep(0.01)
        fw.close()

    ptsevent.spawn(writer)
    assert fr.readline() == "héllo\n"
    assert fr.read() == "wörld\n"
    fr.close()


def test_fdopen_of_a_descriptor_we_did_not_create_restores_blocking_mode():
    r, w = os.pipe()
    try:
        assert not nonblocking(r)
        f = pos.fdopen(r, "rb", buffering=0, closefd=False)
        assert nonblocking(r)
        os.write(w, b"x")
        assert f.read(1) == b"x"
        f.close()
        assert not nonblocking(r)
    finally:
        os.close(r)
        os.close(w)


def test_open_fifo_waits_cooperatively_for_its_peer(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def writer():
        with pos.open(fifo, "wb") as f:
            f.write(b"through the fifo\n")

    start = time.monotonic()
    t = ptsevent.spawn_later(0.05, writer)
    with pos.open(fifo, "rb") as f:
        assert f.readline() == b"through the fifo\n"
        assert f.read() == b""
    t.join(2)
    assert t.successful()
    assert time.monotonic() - start >= 0.045


def test_regular_files_are_plain_files(tmp_path):
    path = tmp_path / "plain.txt"
    with pos.open(path, "w") as f:
        f.write("abc")
    with pos.open(path) as f:
        assert isinstance(f, io.TextIOWrapper)
        assert f.read() == "abc"
    assert pos.file_compat is pos.open


def test_open_fdopen_and_file_compat_are_at_the_package_top_level():
    # ptsevent.open(...) as the original API spelled it; a star import must
    # not shadow the builtin open, so it is not in __all__.
    assert ptsevent.open is pos.open
    assert ptsevent.fdopen is pos.fdopen
    assert ptsevent.file_compat is pos.open
    assert "open" not in ptsevent.__all__
    r, w = os.pipe()
    with ptsevent.fdopen(r, "rb") as rf, ptsevent.open(w, "wb") as wf:
        wf.write(b"through the top level")
        wf.flush()
        assert rf.read1(100) == b"through the top level"


def test_fdopen_rejects_bad_descriptors_like_os_fdopen():
    with pytest.raises(TypeError):
        pos.fdopen("3")
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError):
        pos.fdopen(r)


def test_unbuffered_text_is_refused_as_by_open():
    r, w = pos.pipe()
    try:
        with pytest.raises(ValueError):
            pos.fdopen(r, "r", buffering=0, closefd=False)
    finally:
        os.close(r)
        os.close(w)


def test_a_pseudo_terminal_is_read_cooperatively():
    master, slave = os.openpty()
    try:
        f = pos.fdopen(master, "rb", buffering=0, closefd=False)
        assert f.isatty()

        def typist():
            ptsevent.sleep(0.02)
            os.write(slave, b"typed\n")

        t = ptsevent.spawn(typist)
        start = time.monotonic()
        data = b""
        while not data.endswith(b"\n"):
            data += f.read(64)
        assert data.replace(b"\r", b"") == b"typed\n"
        assert time.monotonic() - start >= 0.015
        t.join()
        f.close()
        assert not nonblocking(master)
    finally:
        os.close(master)
        os.close(slave)


def test_nbfile_over_a_pseudo_terminal_reads_lines():
    from ptsevent import socket as psocket
    master, slave = os.openpty()
    try:
        nb = psocket.nbfile(master, closefd=False)
        ptsevent.spawn_later(0.01, os.write, slave, b"one\ntwo\n")
        assert nb.readline().rstrip(b"\r\n") == b"one"
        assert nb.readline().rstrip(b"\r\n") == b"two"
        nb.close()
        assert not nonblocking(master)
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize("path", ["/dev/null", "/dev/zero", "/dev/urandom"])
def test_character_devices_read_and_write_like_builtins_open(path):
    # Devices that are always ready: the cooperative file never waits on
    # them, and returns what builtins.open returns.
    with pos.open(path, "rb", buffering=0) as f, open(path, "rb", buffering=0) as ref:
        assert f.isatty() is False
        got, expected = f.read(4096), ref.read(4096)
        assert len(got) == len(expected)
        if path != "/dev/urandom":
            assert got == expected
        buf = bytearray(100)
        assert f.readinto(buf) == ref.readinto(bytearray(100))
    with pos.open(path, "wb") as f:
        assert f.write(b"x" * 100_000) == 100_000
        f.flush()


def test_character_device_through_nbfile_reads_exact_sizes():
    from ptsevent import socket as psocket
    fd = os.open("/dev/zero", os.O_RDONLY)
    nb = psocket.nbfile(fd)
    try:
        assert nb.read(10) == b"\0" * 10
        assert nb.read(70_000) == b"\0" * 70_000
        assert nb.peek(3)[:3] == b"\0\0\0"
    finally:
        nb.close()
    with pytest.raises(OSError):
        os.fstat(fd)  # closefd=True closed it
