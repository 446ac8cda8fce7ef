"""Ticket backends alone: what one keytab ticket costs, and the first one after a start.

A throwaway MIT KDC (k5test, as in the tests) gets one principal with a
root-owned keytab. Each backend then asks for keytab tickets in a loop, as
the hub does, the child running as ``nobody`` (a hub with root running the
request as the user), and the script prints the median and p90 of a ticket:

- ``kinit``: one kinit process a ticket;
- ``krb5``: the worker pool (a worker forked by the fork server, then reused);
- ``krb5 first``: the first ticket of a new backend, with and without
  :meth:`~kerbauth.core.backends.libkrb5.Krb5Backend.warm` called a second
  before (a hub calls it at start, well before the first spawn).

Run it as root from the repository root (takes about half a minute)::

    /opt/kerbauth/venv/bin/python benchmarks/backends.py --count 200

Everything (the KDC, its directory, the workers) is removed at the end.
"""

import argparse
import os
import pwd
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from kerbauth.core import tickets  # noqa: E402
from support.realm import add_principal, start_realm  # noqa: E402


def ticket(backend, principal, keytab, run_as):
    started = time.perf_counter()
    tickets.keytab_ticket_bytes(
        backend, principal=principal, keytab=keytab, keytab_owner=0, timeout=10, run_as=run_as
    )
    return time.perf_counter() - started


def row(name, samples):
    samples = sorted(samples)
    p90 = samples[int(0.9 * (len(samples) - 1))]
    print(
        f"{name:<24} median {statistics.median(samples) * 1000:7.2f} ms"
        f"   p90 {p90 * 1000:7.2f} ms   ({len(samples)} tickets)"
    )


def first_ticket(principal, keytab, run_as, warm, rounds):
    samples = []
    for _ in range(rounds):
        backend = tickets.make_backend("krb5", max_workers=2)
        try:
            if warm:
                backend.warm()
                time.sleep(1)  # the hub's start-up, before the first spawn
            samples.append(ticket(backend, principal, keytab, run_as))
        finally:
            backend.close()
    return samples


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="tickets per backend")
    parser.add_argument("--rounds", type=int, default=5, help="new backends for the first ticket")
    args = parser.parse_args()
    nobody = pwd.getpwnam("nobody")
    run_as = (nobody.pw_uid, nobody.pw_gid)
    k5 = start_realm()
    directory = tempfile.mkdtemp(prefix="kbt-bench-")
    try:
        os.environ["KRB5_CONFIG"] = k5.env["KRB5_CONFIG"]
        keytab = os.path.join(directory, "bench.keytab")
        principal = add_principal(k5, "bench", keytab)
        for name in ("kinit", "krb5"):
            backend = tickets.make_backend(name, max_workers=2)
            try:
                ticket(backend, principal, keytab, run_as)  # the pool's first worker
                row(name, [ticket(backend, principal, keytab, run_as) for _ in range(args.count)])
            finally:
                getattr(backend, "close", lambda: None)()
        for warm in (False, True):
            samples = first_ticket(principal, keytab, run_as, warm, args.rounds)
            row(f"krb5 first{' (warm)' if warm else ''}", samples)
    finally:
        os.unlink(os.path.join(directory, "bench.keytab"))
        os.rmdir(directory)
        k5.stop()


if __name__ == "__main__":
    main()
