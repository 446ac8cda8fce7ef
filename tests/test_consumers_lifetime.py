"""The consumers keep working for as long as the notebook is open (issue 13, item 3).

Against a realm whose tickets live one minute, a user's server in each mode
of tests/support/served.py runs side by side with the others for three ticket
lives: keytab (the hub replaces the cache with a new ticket), password (the
hub renews the ticket of the login password and replaces the cache) and fetch
(the server fetches a new ticket from the hub and replaces its own cache).
Meanwhile, each as the user with only the server's environment
(:meth:`support.served.Served.popen`):

- a JVM started before the first replacement keeps running past three lives,
  calling Hadoop's ``reloginFromTicketCache()`` and making a new JAAS login
  every few seconds (tests/support/java/LongLived.java); every check must
  prove the credentials good at that moment (a service ticket from the KDC);
- short clients are started back to back for the whole window, so some run
  at every replacement of the cache: ``klist -s``, a new JVM with a JAAS
  login, ``curl --negotiate`` against Apache with mod_auth_gssapi and
  ``psql`` over GSSAPI (tests/support/httpd.py, postgres.py); none may fail.

As root, without following links, the test watches each cache every 50 ms:
it counts the replacements (a new inode with a new ticket) and asserts the
cache was never missing, unreadable, expired or someone else's in between.

Separately, in the keytab mode: a user who runs ``kdestroy`` keeps their
ticket (kdestroy cannot remove a file from the hub's cache directory, and
says so), and a cache the user empties is written again by the hub within
one renewal look: which servers hold tickets is the hub's record, not what
the file holds.
"""

import concurrent.futures
import os
import stat
import subprocess
import threading
import time
from dataclasses import dataclass

import pytest
import requests

from kerbauth.core.ccache import parse_ccache
from support.jvm import krb5_conf_option
from support.realm import add_principal, start_realm
from support.served import MODES

LIFE = 60  # seconds: the realm's max_life
# Renewable for 10 minutes, for the password tickets (the hub renews them); keytab tickets
# are requested anew each time, so renew-until does not matter to them.
SHORT_TICKETS = {"realms": {"$realm": {"max_life": f"{LIFE}s", "max_renewable_life": "10m"}}}
# How an admin sets renewal for a realm of 1-minute tickets: replace each ticket 20 s before
# its end (renew_margin; the keytab hub and the fetch server's keeper use the same rule), and
# look again within 5 s after a look that failed (renew_interval must be shorter than the
# margin, so that a failure is retried while the ticket still has time left).
MARGIN = 20
RENEWAL = f"c.KerberosTickets.renew_margin = {MARGIN}\nc.KerberosTickets.renew_interval = 5\n"
WINDOW = 3 * LIFE + 5  # from the first ticket's start
SERVICE = "host/lifetime.kerbauth.test"  # what the JVM asks a service ticket for
JVM_EVERY_MS = 3000
WATCH_EVERY = 0.05


@pytest.fixture
def short_realm():
    k5 = start_realm(kdc_conf=SHORT_TICKETS)
    try:
        add_principal(k5, SERVICE)
        yield k5
    finally:
        k5.stop()


def read_cache(path):
    """``(stat, TicketTimes or None)`` of the cache at ``path``, read as root without
    following a link; ``(None, None)`` when there is no such file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, None
    except OSError:  # a link planted there (ELOOP), say
        return os.lstat(path), None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return st, None
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    try:
        return st, parse_ccache(b"".join(chunks))
    except Exception:  # noqa: BLE001 - unreadable is what the watch reports
        return st, None


class CacheWatch:
    """Looks at a user's cache every 50 ms on a thread, as root.

    ``replacements``: ``(seen_before, seen_after, ticket)`` for each new inode
    holding a new ticket (the replacement happened between the two times);
    ``faults``: every look at which the cache was not the user's valid ticket.
    """

    def __init__(self, served):
        self.path, self.served = served.ccache, served
        st, self.first = read_cache(self.path)
        assert self.first is not None and self.first.principal == served.principal, self.path
        assert self.first.end - self.first.start <= LIFE, self.first
        self.inode, self.start, self.seen = st.st_ino, self.first.start, time.time()
        self.replacements, self.faults, self.looks = [], [], 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        account = self.served.account
        while not self.stopped.wait(WATCH_EVERY):
            st, ticket = read_cache(self.path)
            now = time.time()
            self.looks += 1
            if st is None or ticket is None:
                self.faults.append((now, "missing" if st is None else "unreadable"))
            elif ticket.principal != self.served.principal or ticket.end <= now:
                self.faults.append((now, f"{ticket}"))
            elif (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != (
                account.uid,
                account.gid,
                0o600,
            ):
                self.faults.append((now, f"owner {st.st_uid}:{st.st_gid} mode {st.st_mode:o}"))
            elif st.st_ino != self.inode:
                if ticket.start != self.start:
                    self.replacements.append((self.seen, now, ticket))
                self.inode, self.start = st.st_ino, ticket.start
            self.seen = now

    def stop(self):
        self.stopped.set()
        self.thread.join()


def jvm_lines(output):
    """The LongLived program's check lines as ``(kind, ok, time in s, fields, line)``
    (``fields``: principal, start and end of the TGT, for a line that is ok)."""
    lines = []
    for line in output.splitlines():
        kind, status, at, rest = (line.split(" ", 3) + ["", "", ""])[:4]
        if kind not in ("ugi", "jaas"):
            continue  # the JVM's own messages, if any
        fields = dict(f.split("=", 1) for f in rest.split() if "=" in f)
        lines.append((kind, status == "ok", int(at) / 1000, fields, line))
    return lines


@dataclass
class Run:
    what: str
    started: float
    ended: float
    returncode: int
    output: str


class Clients:
    """Short clients started back to back until ``until``, one stream per kind on a thread.

    ``streams``: ``{what: argv}``; ``run(argv)`` runs one as the user (a CompletedProcess).
    """

    def __init__(self, run, until, streams):
        self.runs = []
        self.until = until
        self.stopped = threading.Event()
        self.threads = [
            threading.Thread(target=self._loop, args=(run, what, argv), daemon=True)
            for what, argv in streams.items()
        ]
        for thread in self.threads:
            thread.start()

    def _loop(self, run, what, argv):
        while time.time() < self.until and not self.stopped.is_set():
            started = time.time()
            try:
                result = run(argv)
                code, output = result.returncode, result.stdout + result.stderr
            except Exception as e:  # noqa: BLE001 - a client that cannot run has failed
                code, output = -1, repr(e)
            self.runs.append(Run(what, started, time.time(), code, output))

    def join(self):
        for thread in self.threads:
            thread.join(timeout=max(0, self.until - time.time()) + 90)
        assert not any(t.is_alive() for t in self.threads)

    def stop(self):
        self.stopped.set()
        for thread in self.threads:
            thread.join(timeout=90)


class Notebook:
    """One user's server under test: its cache watch, long-lived JVM and short clients.

    The watch and the JVM start at once, before the first replacement (40 s
    into the ticket's life); the short clients once the JVM has logged in (so
    that they do not slow its start on a busy machine), or at that first
    replacement at the latest. All run until three lives after the first
    ticket's start. ``streams``: more short clients (``{what: argv}``).
    """

    def __init__(self, served, java_client, **streams):
        self.served = served
        options = (
            krb5_conf_option(served.env),
            "-XX:TieredStopAtLevel=1",  # C1 only and one GC thread: a quicker start
            "-XX:+UseSerialGC",
        )
        self.watch = CacheWatch(served)
        self.until = self.watch.first.start + WINDOW
        seconds = str(int(self.until - time.time()) + 1)
        argv = java_client("LongLived", SERVICE, seconds, str(JVM_EVERY_MS), jvm_options=options)
        self.jvm = served.popen(argv, stderr=subprocess.STDOUT)
        self.jvm_started = time.time()
        self.output, self.logged_in = [], threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.short_jvm = java_client("LongLived", SERVICE, "0", "0", jvm_options=options)
        self.streams = streams
        self.clients = None

    def _read(self):
        for line in self.jvm.stdout:
            self.output.append(line)
            if line.startswith(("ugi ", "jaas ")):
                self.logged_in.set()
        self.logged_in.set()  # it ended: nothing to wait for

    def start_clients(self):
        self.logged_in.wait(max(0, self.watch.first.end - MARGIN - time.time()))
        self.clients_started = time.time()
        self.clients = Clients(
            lambda argv: self.served.run(argv, timeout=60),
            self.until,
            {"klist -s": ["klist", "-s"], "jvm jaas": self.short_jvm, **self.streams},
        )

    def finish(self):
        """Wait for the JVM and the clients; the JVM's ``(returncode, output)``."""
        self.jvm.wait(timeout=max(0, self.until - time.time()) + 90)
        self.reader.join(timeout=30)
        self.clients.join()
        self.watch.stop()
        return self.jvm.returncode, "".join(self.output)

    def stop(self):
        """In ``finally``: nothing of this notebook's keeps running."""
        if self.clients is not None:
            self.clients.stop()
        if self.jvm.poll() is None:
            self.jvm.kill()
            self.jvm.wait()
        self.watch.stop()


def check_notebook(nb, returncode, out):
    served, watch = nb.served, nb.watch
    what = f"{served.mode} ({served.name})"
    # The cache: never missing, unreadable, expired or someone else's, and replaced
    # several times in the window (every 40 s: four times in 185 s).
    assert watch.faults == [], (what, watch.faults[:5])
    assert watch.looks > WINDOW, (what, watch.looks)
    assert len(watch.replacements) >= 4, (what, watch.replacements)
    tickets = [watch.first] + [t for _, _, t in watch.replacements]
    assert tickets[-1].start >= watch.first.start + 2 * LIFE, (what, tickets)

    # The long-lived JVM: started before the first replacement, every line a success, up
    # to past three lives.
    assert nb.jvm_started < watch.replacements[0][0], what
    lines = jvm_lines(out)
    failed = [line for _, ok, _, _, line in lines if not ok]
    assert failed == [] and returncode == 0, (what, failed[:5], out[-3000:])
    for kind in ("ugi", "jaas"):
        mine = [x for x in lines if x[0] == kind]
        assert mine, (what, kind, out)
        assert all(f["principal"] == served.principal for _, _, _, f, _ in mine), (what, kind)
        assert mine[-1][2] >= watch.first.start + 3 * LIFE, (what, kind, mine[-1])
        # It went on with the new tickets (its logins took one TGT after another).
        starts = sorted({int(f["start"]) // 1000 for _, _, _, f, _ in mine})
        assert len(starts) >= 4, (what, kind, starts)

    # The short clients: none failed, and every kind ran through every replacement.
    runs = nb.clients.runs
    bad = [r for r in runs if r.returncode != 0]
    assert bad == [], (what, [(r.what, r.returncode, r.output[-500:]) for r in bad[:5]])
    assert not any("Unable to obtain Principal Name" in r.output for r in runs)
    assert all(r.output.strip() == served.name for r in runs if r.what == "psql"), what
    assert all(r.output.strip() == served.principal for r in runs if r.what == "curl"), what
    # Clients were running at each replacement after they started, and each kind
    # across at least one. (Back to back is not gapless: a run of one kind may fall
    # between two of the watch's looks 50 ms apart, so "each kind at each one" would
    # be luck, not a property.)
    # (Those while they ran: a replacement just past ``until``, when the clients have
    # stopped starting, is not one they could be running at.)
    covered = [
        (b, a, t) for b, a, t in watch.replacements if nb.clients_started <= b and a <= nb.until
    ]
    assert len(covered) >= 3, (what, nb.clients_started, watch.replacements)

    def running(clients, before, after):
        return any(r.started <= after and r.ended >= before for r in clients)

    for before, after, ticket in covered:
        assert running(runs, before, after), (what, ticket)
    for kind in {r.what for r in runs}:
        mine = [r for r in runs if r.what == kind]
        assert any(running(mine, b, a) for b, a, _ in covered), (what, kind, covered)
    counts = {kind: sum(r.what == kind for r in runs) for kind in sorted({r.what for r in runs})}
    print(  # shown with -s, or for a failing test
        f"{what}: {len(watch.replacements)} replacements, JVM's first check"
        f" {lines[0][2] - watch.first.start:.1f} s into the first ticket, clients {counts}"
    )
    assert counts["klist -s"] > WINDOW and counts["jvm jaas"] >= 10, (what, counts)


def test_clients_keep_working_for_three_ticket_lives_in_every_mode(
    served, short_realm, java_client, gss_postgres, spnego_httpd
):
    postgres, httpd = gss_postgres(short_realm), spnego_httpd(short_realm)
    curl = ["curl", "-sS", "-f", "--negotiate", "-u", ":", httpd.url]
    notebooks = []

    def notebook(mode):
        # Its watch and JVM start as soon as its server is up.
        user = served(mode, realm=short_realm, extra=RENEWAL)
        postgres.add_role(user.name)
        conninfo = postgres.conninfo(user.name, "require")
        psql = ["psql", "-X", "-A", "-t", "-w", "-c", "select current_user", conninfo]
        notebooks.append(Notebook(user, java_client, psql=psql, curl=curl))

    try:
        # The servers start side by side (a spawn takes 10-25 s here).
        with concurrent.futures.ThreadPoolExecutor(len(MODES)) as pool:
            for started in [pool.submit(notebook, m) for m in MODES]:
                started.result()
        for nb in notebooks:
            nb.start_clients()
        results = [(nb, *nb.finish()) for nb in notebooks]
    finally:
        for nb in notebooks:
            nb.stop()
    assert sorted(nb.served.mode for nb, *_ in results) == sorted(MODES)
    for nb, returncode, out in results:
        check_notebook(nb, returncode, out)


def renewal_count(hub):
    """How many renewals the hub made that worked, from its /hub/metrics."""
    text = requests.get(
        f"{hub.url}/hub/metrics", headers={"Authorization": f"token {hub.token}"}, timeout=30
    ).text
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if (
            name.startswith("kerbauth_ticket_request_duration_seconds_count")
            and 'purpose="renewal"' in name
            and 'outcome="ok"' in name
        ):
            return int(float(value))
    return 0


KDESTROY_INTERVAL = 5  # seconds: renew_interval, the longest between two looks


def wait_for_new_cache(path, inode, deadline):
    """``(stat, ticket)`` of the first valid cache at ``path`` that is not ``inode``."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        st, ticket = read_cache(path)
        if ticket is not None and st.st_ino != inode:
            return st, ticket
        time.sleep(0.1)
    raise AssertionError(f"no new ticket in {path} within {deadline} s")


def test_after_kdestroy_the_user_has_their_ticket_within_one_renewal_look(served):
    user = served("keytab", extra=f"c.KerberosTickets.renew_interval = {KDESTROY_INTERVAL}\n")
    before, ticket = read_cache(user.ccache)
    assert ticket.principal == user.principal
    renewals = renewal_count(user.hub)

    # kdestroy cannot take the ticket from the server: the cache is in the hub's
    # directory (root's, 0711), where the user may not remove a file.
    destroy = user.run(["kdestroy"])
    said = destroy.stderr.replace("\a", "")  # kdestroy rings the bell around NOT
    assert destroy.returncode != 0 and "Ticket cache NOT destroyed" in said, destroy
    assert user.run(["klist", "-s"]).returncode == 0
    st, same = read_cache(user.ccache)
    assert (st.st_ino, same) == (before.st_ino, ticket)

    # What the user can do to their own file (empty it)
    # is undone by the hub within one look: it goes by its own record of the
    # running servers, not by what the file holds.
    wipe = user.run(["truncate", "-s", "0", user.ccache])
    assert wipe.returncode == 0, wipe.stderr
    assert user.run(["klist", "-s"]).returncode != 0
    wiped = time.monotonic()
    st, back = wait_for_new_cache(user.ccache, before.st_ino, KDESTROY_INTERVAL + 10)
    assert time.monotonic() - wiped <= KDESTROY_INTERVAL + 10
    # Written by the hub (a renewal it counted): the user's own file, 0600, one link,
    # a new valid ticket of theirs.
    assert back.principal == user.principal and back.end > time.time()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_nlink) == (
        user.account.uid,
        user.account.gid,
        0o600,
        1,
    )
    assert renewal_count(user.hub) == renewals + 1
    klist = user.run(["klist", "-s"])
    assert klist.returncode == 0, klist.stderr


def test_after_kdestroy_in_a_fetching_server_the_ticket_is_back_within_one_look(served):
    # With the fetch delivery the cache is in a directory of the server's own, so
    # kdestroy does remove it; the keeper looks at it every renew_interval (the
    # hub gives it KERBAUTH_RENEW_INTERVAL) and fetches the ticket again, long
    # before the ticket itself would be due (a day here).
    user = served("fetch", extra=f"c.KerberosTickets.renew_interval = {KDESTROY_INTERVAL}\n")
    assert user.env["KERBAUTH_RENEW_INTERVAL"] == str(KDESTROY_INTERVAL)
    before, ticket = read_cache(user.ccache)
    assert ticket.principal == user.principal and ticket.end - time.time() > 3600

    destroy = user.run(["kdestroy"])
    assert destroy.returncode == 0, destroy.stderr
    assert read_cache(user.ccache) == (None, None)
    destroyed = time.monotonic()
    st, back = wait_for_new_cache(user.ccache, before.st_ino, KDESTROY_INTERVAL + 10)
    assert time.monotonic() - destroyed <= KDESTROY_INTERVAL + 10
    assert back.principal == user.principal and back.end > time.time()
    assert (st.st_uid, stat.S_IMODE(st.st_mode), st.st_nlink) == (user.account.uid, 0o600, 1)
    klist = user.run(["klist", "-s"])
    assert klist.returncode == 0, klist.stderr
    # The server's log says why it fetched again.
    assert "no longer holds the ticket of" in user.hub.log_text()
