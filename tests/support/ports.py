"""Free loopback ports for the daemons the tests start."""

import contextlib
import random
import socket


def _free(port, kinds=(socket.SOCK_STREAM, socket.SOCK_DGRAM)):
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port_block(size=10, low=20000, high=60000, attempts=200):
    """The first port of ``size`` consecutive free TCP+UDP ports on 127.0.0.1.

    Random bases keep parallel or crashed earlier runs (a KDC left on its
    port) from colliding with this one.
    """
    for _ in range(attempts):
        base = random.randrange(low, high - size, size)
        if all(_free(p) for p in range(base, base + size)):
            return base
    raise RuntimeError(f"no block of {size} free ports found")


def free_port():
    """One free TCP port on 127.0.0.1, chosen by the kernel."""
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
