"""Free loopback ports for the daemons the tests start.

Ports are picked at random below the kernel's ephemeral range
(``ip_local_port_range``), and checked free. A port the kernel hands out for
``bind(0)`` comes from the ephemeral range, where it can be taken again, between
the check and the daemon's own bind, by any outgoing connection or by another
test run doing the same; a random port below that range is only taken by
someone choosing it the same way, which for a run with its own random picks
is unlikely.
"""

import random
import socket


def _ephemeral_low(default=32768):
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return default


LOW = 20000
HIGH = max(LOW + 1000, _ephemeral_low())


def _free(port, kinds=(socket.SOCK_STREAM, socket.SOCK_DGRAM)):
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


_given = set()


def free_port_block(size=10, low=LOW, high=HIGH, attempts=500):
    """The first port of ``size`` consecutive free TCP+UDP ports on 127.0.0.1.

    Random bases keep parallel or crashed earlier runs (a KDC left on its
    port) from colliding with this one; a port is never handed out twice in
    one run.
    """
    for _ in range(attempts):
        base = random.randrange(low, high - size)
        ports = range(base, base + size)
        if not _given.intersection(ports) and all(_free(p) for p in ports):
            _given.update(ports)
            return base
    raise RuntimeError(f"no block of {size} free ports found between {low} and {high}")


def free_port():
    """One free TCP (and UDP) port on 127.0.0.1, below the ephemeral range."""
    return free_port_block(1)
