"""The echo servers every network benchmark runs, one function per family.

serve(impl, ready, backlog=1024, nodelay=True) listens on 127.0.0.1 (an
ephemeral port), calls ready(port) once listening, then serves until the
process is killed. Byte echoes read with recv(RECV_SIZE) (or
StreamReader.read) and write back what they got; line echoes read with
readline() and write the line back.
"""

import socket

RECV_SIZE = 65536

IMPLS = (
    "ptsevent",
    "gevent",
    "ptsevent-fastsocket",
    "ptsevent-makefile",
    "gevent-makefile",
    "asyncio-streams",
    "uvloop-streams",
    "uvloop-protocol",
)

# The library each implementation needs (for _common.import_impl).
LIBRARY = {
    "ptsevent": "ptsevent",
    "gevent": "gevent",
    "ptsevent-fastsocket": "ptsevent",
    "ptsevent-makefile": "ptsevent",
    "gevent-makefile": "gevent",
    "asyncio-streams": "asyncio",
    "uvloop-streams": "uvloop",
    "uvloop-protocol": "uvloop",
}

_NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _echo_bytes(conn):
    recv, sendall = conn.recv, conn.sendall
    try:
        while True:
            data = recv(RECV_SIZE)
            if not data:
                break
            sendall(data)
    except OSError:
        pass
    finally:
        conn.close()


def _echo_lines(conn, f):
    readline, write, flush = f.readline, f.write, f.flush
    try:
        while True:
            line = readline()
            if not line:
                break
            write(line)
            flush()
    except OSError:
        pass
    finally:
        conn.close()


def _serve_ptsevent(impl, ready, backlog, nodelay):
    import ptsevent
    from ptsevent import socket as psocket

    cls = psocket.fastsocket if impl == "ptsevent-fastsocket" else psocket.socket
    listener = cls(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(backlog)

    def handle(conn):
        if nodelay:
            conn.setsockopt(*_NODELAY)
        if impl == "ptsevent":
            _echo_bytes(conn)
        else:
            _echo_lines(conn, conn.makefile("rwb"))  # a fastsocket is its file

    def accept_loop():
        while True:
            conn, _ = listener.accept()
            ptsevent.spawn(handle, conn)

    acceptor = ptsevent.spawn(accept_loop)
    ready(listener.getsockname()[1])
    acceptor.join()


def _serve_gevent(impl, ready, backlog, nodelay):
    from gevent.server import StreamServer

    def handle(conn, _address):
        if nodelay:
            conn.setsockopt(*_NODELAY)
        if impl == "gevent":
            _echo_bytes(conn)
        else:
            _echo_lines(conn, conn.makefile("rwb"))

    server = StreamServer(("127.0.0.1", 0), handle, backlog=backlog)
    server.start()
    ready(server.server_port)
    server.serve_forever()


def _serve_asyncio(impl, ready, backlog, nodelay):
    # asyncio and uvloop set TCP_NODELAY on their stream sockets themselves.
    import asyncio

    async def handle(reader, writer):
        read, write, drain = reader.read, writer.write, writer.drain
        try:
            while True:
                data = await read(RECV_SIZE)
                if not data:
                    break
                write(data)
                await drain()
        except OSError:
            pass
        finally:
            writer.close()

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

    async def main():
        loop = asyncio.get_running_loop()
        if impl == "uvloop-protocol":
            server = await loop.create_server(Echo, "127.0.0.1", 0, backlog=backlog)
        else:
            server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=backlog)
        ready(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    if impl.startswith("uvloop"):
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    else:
        runner = asyncio.Runner()
    with runner:
        runner.run(main())


def serve(impl, ready, backlog=1024, nodelay=True):
    if impl.startswith("ptsevent"):
        _serve_ptsevent(impl, ready, backlog, nodelay)
    elif impl.startswith("gevent"):
        _serve_gevent(impl, ready, backlog, nodelay)
    else:
        _serve_asyncio(impl, ready, backlog, nodelay)
