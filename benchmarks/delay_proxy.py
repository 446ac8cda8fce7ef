"""A TCP proxy that makes a server answer later: every chunk the server sends
reaches the client ``delay`` seconds after it arrived, in order.

What the client sends passes at once, so each request/answer round trip
(StartTLS, each TLS handshake flight, a bind, a search) costs ``delay`` more,
as an LDAP server far away or under load would. Runs in a process of its own
(:func:`start_delay_proxy`), so its work does not share a GIL with what is
measured.
"""

import asyncio
import contextlib
import multiprocessing
import socket
import time


def _no_delay(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _delayed_pipe(reader, writer, delay):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def release():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    releaser = asyncio.create_task(release())
    try:
        while data := await reader.read(65536):
            queue.put_nowait((loop.time() + delay, data))
    except (ConnectionError, OSError):
        pass
    queue.put_nowait((0, None))
    with contextlib.suppress(Exception):
        await releaser
    with contextlib.suppress(Exception):
        writer.close()


async def _serve(listen_port, target, delay, ready):
    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(*target)
        except OSError:
            client_writer.close()
            return
        _no_delay(client_writer)
        _no_delay(server_writer)
        await asyncio.gather(
            _pipe(client_reader, server_writer),
            _delayed_pipe(server_reader, client_writer, delay),
        )

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    ready.set()
    async with server:
        await server.serve_forever()


def _run(listen_port, target, delay, ready):
    asyncio.run(_serve(listen_port, target, delay, ready))


@contextlib.contextmanager
def start_delay_proxy(target, delay, listen_port):
    """Run the proxy to ``target`` (host, port) on 127.0.0.1:``listen_port``; stop it after."""
    ready = multiprocessing.Event()
    process = multiprocessing.Process(
        target=_run, args=(listen_port, target, delay, ready), daemon=True
    )
    process.start()
    try:
        if not ready.wait(10):
            raise RuntimeError("the delaying proxy did not start")
        yield ("127.0.0.1", listen_port)
    finally:
        process.terminate()
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()


if __name__ == "__main__":
    # Manual check: python delay_proxy.py HOST PORT DELAY LISTEN_PORT
    import sys

    host, port, delay, listen = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    with start_delay_proxy((host, port), delay, listen):
        print(f"127.0.0.1:{listen} -> {host}:{port}, answers {delay * 1000:.0f} ms later")
        while True:
            time.sleep(3600)
