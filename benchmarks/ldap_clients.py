"""Which LDAP client: ldap3 against python-ldap and bonsai, on a real slapd.

One command, as root on Debian with slapd installed, from the repository root::

    /opt/kerbauth/venv/bin/python benchmarks/ldap_clients.py
    /opt/kerbauth/venv/bin/python benchmarks/ldap_clients.py --logins 200 --rounds 5 --skip-hostile

The three clients live in a venv of their own, never in kerbauth's (python-ldap
and bonsai compile against libldap, so Debian's libldap2-dev and libsasl2-dev
must be installed first)::

    /usr/bin/python3 -m venv /opt/kerbauth/bench-ldap
    /opt/kerbauth/bench-ldap/bin/pip install ldap3 python-ldap bonsai

This script (in kerbauth's venv) starts the throwaway slapd of
``tests/support/slapd.py`` and the misbehaving servers of
``tests/support/hostile_ldap.py``, and runs each measurement in a fresh
``/opt/kerbauth/bench-ldap/bin/python`` process running this same file with
``--worker`` (the job on stdin, the answer on stdout as JSON; passwords go
through stdin only). It measures:

- the login burst: N logins (connect, StartTLS with the certificate verified,
  simple bind, unbind), each client used as kerbauth would: ldap3 and
  python-ldap on a pool of 8 threads (``executor_threads``' default), bonsai
  as N asyncio tasks at once; throughput, latency percentiles from the burst's
  start (what a user waits, queue included), and CPU time per login;
- the hostile servers: for each client, with its own connect and receive
  timeouts set to 1 s and certificate verification asked for, what a login or
  a search does against a server that never lets the TCP connect finish, one
  that accepts and never answers, one that trickles its answers a byte at a
  time, one whose answers each come late, one that answers a search with a
  24 MB entry, one that answers garbage, and TLS servers with a certificate
  from an unknown CA or for another name.

It asserts nothing: it prints tables and ratios to ldap3 measured in the same
run. The default run takes about a minute.
"""

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH_PYTHON = "/opt/kerbauth/bench-ldap/bin/python"
CLIENTS = ("ldap3", "python-ldap", "bonsai")
THREADS = 8  # KerberosLDAPAuthenticator.executor_threads' default
CASE_CAP = 8.0  # a worker still busy after this long is killed: "no answer"


# --- the worker: runs in the bench venv, stdlib and the three clients only --------------


def _error(e):
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}"[:110]


def _ldap3_login(job, dn, password, search=None):
    import ssl

    import ldap3

    t = job["timeouts"]
    tls = None
    if job.get("verify", True):
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=job.get("ca"))
    elif job.get("ldaps"):
        tls = ldap3.Tls()  # what ldap3 does when not told otherwise
    server = ldap3.Server(
        job["host"],
        port=job["port"],
        use_ssl=bool(job.get("ldaps")),
        tls=tls,
        connect_timeout=t,
        get_info=ldap3.NONE,
    )
    conn = ldap3.Connection(
        server,
        user=dn,
        password=password,
        receive_timeout=max(1, round(t)),  # whole seconds: SO_RCVTIMEO is packed as ints
        raise_exceptions=True,
    )
    try:
        conn.open()
        if job.get("starttls"):
            conn.start_tls()
        conn.bind()
        if search:
            conn.search(search, "(objectClass=*)", attributes=["*"], time_limit=1)
            entries = [e["raw_attributes"] for e in conn.response if "raw_attributes" in e]
            return sum(len(v) for attrs in entries for vs in attrs.values() for v in vs)
    finally:
        with contextlib.suppress(ldap3.core.exceptions.LDAPException):
            conn.unbind()
    return 0


def _python_ldap_login(job, dn, password, search=None):
    import ldap

    t = job["timeouts"]
    scheme = "ldaps" if job.get("ldaps") else "ldap"
    conn = ldap.initialize(f"{scheme}://{job['host']}:{job['port']}")
    try:
        conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
        conn.set_option(ldap.OPT_REFERRALS, 0)
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, t)  # the TCP connect
        conn.set_option(ldap.OPT_TIMEOUT, t)  # each synchronous operation's wait
        if job.get("verify", True):
            conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
            if job.get("ca"):
                conn.set_option(ldap.OPT_X_TLS_CACERTFILE, job["ca"])
            conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
        if job.get("starttls"):
            conn.start_tls_s()
        conn.simple_bind_s(dn, password)
        if search:
            found = conn.search_st(search, ldap.SCOPE_BASE, timeout=t)
            return sum(len(v) for _, attrs in found for vs in attrs.values() for v in vs)
    finally:
        with contextlib.suppress(ldap.LDAPError):
            conn.unbind_ext_s()
    return 0


async def _bonsai_login(job, dn, password, search=None):
    import bonsai

    t = job["timeouts"]
    scheme = "ldaps" if job.get("ldaps") else "ldap"
    client = bonsai.LDAPClient(
        f"{scheme}://{job['host']}:{job['port']}", tls=bool(job.get("starttls"))
    )
    if job.get("verify", True):
        client.set_cert_policy("demand")
        if job.get("ca"):
            client.set_ca_cert(job["ca"])
    client.set_credentials("SIMPLE", user=dn, password=password)
    conn = await client.connect(is_async=True, timeout=t)  # connect, StartTLS, bind
    try:
        if search:
            found = await conn.search(search, bonsai.LDAPSearchScope.BASE, timeout=t)
            return sum(
                len(v) if isinstance(v, (bytes, str)) else 0
                for e in found
                for k in e.keys()
                if k != "dn"
                for v in e[k]
            )
    finally:
        conn.close()
    return 0


def _one(job, dn, password, search=None):
    """One login (and search) with the job's client; returns bytes of attribute values read."""
    if job["client"] == "bonsai":
        import asyncio

        async def watched():
            # How long the event loop went without running a 10 ms ticker: a hub's
            # event loop would have answered nothing else meanwhile.
            stall = [0.0]

            async def ticker():
                last = time.monotonic()
                while True:
                    await asyncio.sleep(0.01)
                    now = time.monotonic()
                    stall[0] = max(stall[0], now - last - 0.01)
                    last = now

            tick = asyncio.create_task(ticker())
            try:
                return await _bonsai_login(job, dn, password, search)
            finally:
                tick.cancel()
                job["loop_stall"] = stall[0]

        return asyncio.run(watched())
    login = _ldap3_login if job["client"] == "ldap3" else _python_ldap_login
    return login(job, dn, password, search)


def _cpu():
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _burst(job):
    users = [tuple(u) for u in job["users"]]
    rounds = []
    for _ in range(job["rounds"] + 1):  # the first round warms up and is not kept
        cpu0, start = _cpu(), time.monotonic()
        if job["client"] == "bonsai":
            import asyncio

            async def one(dn, password, start=start):
                await _bonsai_login(job, dn, password)
                return time.monotonic() - start

            async def all_at_once():
                return await asyncio.gather(*(one(dn, pw) for dn, pw in users))

            latencies = asyncio.run(all_at_once())
        else:
            from concurrent.futures import ThreadPoolExecutor

            def one(user, start=start):
                _one(job, *user)
                return time.monotonic() - start

            with ThreadPoolExecutor(THREADS) as pool:
                latencies = list(pool.map(one, users))
        rounds.append(
            {"seconds": time.monotonic() - start, "cpu": _cpu() - cpu0, "latencies": latencies}
        )
    return {"rounds": rounds[1:]}


def _case(job):
    import resource

    start = time.monotonic()
    try:
        size = _one(job, job.get("dn", ""), job.get("password", ""), job.get("search"))
        outcome = {"ok": True, "error": f"read {size / 1e6:.1f} MB" if job.get("search") else ""}
    except Exception as e:  # noqa: BLE001 - what each client raises is the measurement
        outcome = {"ok": False, "error": _error(e)}
    outcome["seconds"] = time.monotonic() - start
    if "loop_stall" in job:
        outcome["error"] += f" [event loop stalled {job['loop_stall']:.1f} s]"
    outcome["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return outcome


def worker():
    job = json.loads(sys.stdin.read())
    answer = _burst(job) if job["task"] == "burst" else _case(job)
    sys.stdout.write(json.dumps(answer))


# --- the orchestrator: kerbauth's venv, slapd and the hostile servers ------------------


def run_worker(job, cap=None):
    """Run ``job`` in a fresh bench-venv process; None if it is still busy after ``cap`` s."""
    env = {**os.environ, **job.pop("env", {})}
    process = subprocess.Popen(
        [BENCH_PYTHON, os.path.abspath(__file__), "--worker"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(json.dumps(job), timeout=cap)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return None
    if process.returncode != 0:
        raise RuntimeError(f"{job['client']} worker failed:\n{err[-3000:]}")
    return json.loads(out)


def percentile(values, p):
    import math

    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def burst_table(slapd, args):
    users = [(p.dn, p.password) for p in slapd.people.values() if p.uid.startswith("bench-")][
        : args.logins
    ]
    common = {
        "task": "burst",
        "host": "127.0.0.1",
        "port": slapd.ldap_port,
        "starttls": True,
        "ca": slapd.ca_file,
        "timeouts": 5.0,
        "users": users,
        "rounds": args.rounds,
    }
    results = {}
    for client in CLIENTS:
        answer = run_worker({**common, "client": client})
        latencies = [x for r in answer["rounds"] for x in r["latencies"]]
        seconds = sum(r["seconds"] for r in answer["rounds"])
        cpu = sum(r["cpu"] for r in answer["rounds"])
        results[client] = {
            "rate": len(latencies) / seconds,
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "max": max(latencies),
            "cpu_ms": 1000 * cpu / len(latencies),
        }
        print(f"  burst {client}: {results[client]['rate']:.0f} logins/s", flush=True)
    print()
    print(
        f"{'client':<12} {'how':<18} {'logins/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'max ms':>8} {'CPU ms/login':>13}"
    )
    pool = f"{THREADS} threads"
    how = {"ldap3": pool, "python-ldap": pool, "bonsai": "asyncio, all at once"}
    for client, r in results.items():
        print(
            f"{client:<12} {how[client]:<18} {r['rate']:>9.0f} {1000 * r['p50']:>8.1f}"
            f" {1000 * r['p99']:>8.1f} {1000 * r['max']:>8.1f} {r['cpu_ms']:>13.2f}"
        )
    print(
        f"{args.logins} logins a burst x {args.rounds} bursts (after one warm-up burst): connect,"
        " StartTLS (certificate verified), simple bind, unbind; latency from the burst's start."
    )
    print()
    base = results["ldap3"]
    for client in CLIENTS[1:]:
        r = results[client]
        print(
            f"{client}: {r['rate'] / base['rate']:.2f}x ldap3's logins/s,"
            f" p99 {r['p99'] / base['p99']:.2f}x, CPU per login {r['cpu_ms'] / base['cpu_ms']:.2f}x"
        )
    return results


def hostile_cases(slapd, stack):
    """(label, job fields) for each misbehaving server, started on ``stack``."""
    from support.hostile_ldap import HostileLDAP
    from support.slapd import blackhole, connect_hangs

    alice = slapd.people["alice"]
    login = {"dn": alice.dn, "password": alice.password, "verify": False}
    plain = ("127.0.0.1", slapd.ldap_port)

    def proxy(**kw):
        return stack.enter_context(HostileLDAP(plain, **kw)).address

    hangs = stack.enter_context(connect_hangs())
    hole = stack.enter_context(blackhole())
    trickle = proxy(mode="trickle", byte_delay=0.25)
    slow = proxy(mode="slow", answer_delay=0.8)
    huge = proxy(mode="huge_search", huge_bytes=24 * 1024 * 1024)
    garbage = proxy(mode="malformed")
    ldaps = {"ldaps": True, "dn": alice.dn, "password": alice.password}
    return [
        ("connect never completes", {**login, "host": hangs[0], "port": hangs[1]}),
        ("accepts, never answers", {**login, "host": hole[0], "port": hole[1]}),
        (
            "trickles 1 byte/0.25 s",
            {**login, "host": trickle[0], "port": trickle[1]},
        ),
        (
            "each answer 0.8 s late",
            {**login, "host": slow[0], "port": slow[1], "starttls": True}
            | {"verify": True, "ca": slapd.ca_file},
        ),
        (
            "24 MB search answer",
            {**login, "host": huge[0], "port": huge[1], "search": slapd.base_dn},
        ),
        ("garbage answer", {**login, "host": garbage[0], "port": garbage[1]}),
        (
            "TLS: unknown CA",
            {**ldaps, "host": "127.0.0.1", "port": slapd.ldaps_port, "ca": slapd.other_ca_file},
        ),
        (
            "TLS: other name",
            {**ldaps, "host": "127.0.0.2", "port": slapd.ldaps_port, "ca": slapd.ca_file},
        ),
        (
            "TLS: no options",
            {**ldaps, "host": "127.0.0.1", "port": slapd.ldaps_port, "verify": False},
        ),
        (
            "TLS: right CA (control)",
            {**ldaps, "host": "127.0.0.1", "port": slapd.ldaps_port, "ca": slapd.ca_file},
        ),
    ]


def hostile_table(slapd):
    print()
    print(
        f"{'server':<24} {'client':<12} {'result':<7} {'s':>5} {'RSS MB':>7}  what the client said"
    )
    with contextlib.ExitStack() as stack:
        for label, fields in hostile_cases(slapd, stack):
            clients = [(c, c, {}) for c in CLIENTS]
            if label == "connect never completes":
                clients.append(("bonsai+env", "bonsai", {"LDAPNETWORK_TIMEOUT": "1"}))
            for shown, client, env in clients:
                job = {"task": "case", "client": client, "timeouts": 1.0, "env": env, **fields}
                started = time.monotonic()
                answer = run_worker(job, cap=CASE_CAP)
                if answer is None:
                    answer = {
                        "ok": False,
                        "error": f"still waiting at {CASE_CAP:g} s (killed)",
                        "seconds": time.monotonic() - started,
                        "maxrss_mb": float("nan"),
                    }
                result = "works" if answer["ok"] else "fails"
                print(
                    f"{label:<24} {shown:<12} {result:<7} {answer['seconds']:>5.1f}"
                    f" {answer['maxrss_mb']:>7.0f}  {answer['error']}",
                    flush=True,
                )
    print(
        "every client's connect and receive timeouts set to 1 s (ldap3: connect_timeout,"
        " receive_timeout; python-ldap: OPT_NETWORK_TIMEOUT, OPT_TIMEOUT; bonsai:"
        " connect(timeout=), search(timeout=)); certificate verification asked for except"
        " in 'no options' and the plain-LDAP rows; s: wall time of the login (and search);"
        " RSS MB: the worker's peak; bonsai+env: bonsai with LDAPNETWORK_TIMEOUT=1 in its"
        " environment (libldap's own connect timeout, which bonsai has no option for)."
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--logins", type=int, default=200, help="logins in one burst (200)")
    parser.add_argument("--rounds", type=int, default=3, help="bursts per client (3)")
    parser.add_argument("--skip-hostile", action="store_true", help="the burst only")
    args = parser.parse_args()
    if args.worker:
        return worker()
    if os.geteuid() != 0:
        sys.exit("run as root: slapd needs it")
    if not os.access(BENCH_PYTHON, os.X_OK):
        sys.exit(f"make {os.path.dirname(os.path.dirname(BENCH_PYTHON))} first (see the docstring)")
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
    from support.slapd import default_people, running_slapd

    code = (
        "import importlib.metadata as m, json;"
        "print(json.dumps({n: m.version(n) for n in ('ldap3', 'python-ldap', 'bonsai')}))"
    )
    found = subprocess.run([BENCH_PYTHON, "-c", code], capture_output=True, text=True, check=True)
    versions = json.loads(found.stdout)
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, Python"
        f" {platform.python_version()}, " + ", ".join(f"{n} {v}" for n, v in versions.items()),
        flush=True,
    )
    with running_slapd(people=default_people(bench_users=args.logins), log_level="0") as slapd:
        burst_table(slapd, args)
        if not args.skip_hostile:
            hostile_table(slapd)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
