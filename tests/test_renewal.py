"""Renewal sweeps against a real KDC: what is due, backoff, one log line per failure streak."""

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from kerbauth.core import tickets
from kerbauth.core.cache_directory import CacheDirectory
from kerbauth.core.ccache import parse_ccache, read_ccache
from kerbauth.core.errors import TicketError
from kerbauth.hub.renewal import MIN_WAIT, RenewalTarget, Renewer, due_time
from support.realm import add_principal

UID, GID = 54321, 54322


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def executor():
    with ThreadPoolExecutor(4) as pool:
        yield pool


class Server:
    """One running server's cache, kept as the hub keeps it: the hub's record of the
    ticket it wrote (``times``) decides when it is due, never the file."""

    def __init__(self, k5, tmp_path, name, backend):
        self.name, self.backend = name, backend
        self.keytab = tmp_path / f"{name}.keytab"
        self.principal = add_principal(k5, name, str(self.keytab), uid=UID, gid=GID)
        base = tmp_path / "cc"
        base.mkdir(mode=0o711, exist_ok=True)
        self.cache_dir = CacheDirectory(str(base)).open()
        self.cache = self.cache_dir.file_path(f"krb5cc_{name}")
        self.times = None
        self.renew()

    def renew(self):
        data = tickets.keytab_ticket_bytes(
            self.backend,
            principal=self.principal,
            keytab=str(self.keytab),
            keytab_owner=UID,
            timeout=5,
        )
        self.cache_dir.write(f"krb5cc_{self.name}", data, UID, GID)
        ticket = parse_ccache(data)
        self.times = (ticket.start, ticket.end)
        return self.times

    def inspect(self):
        data = self.cache_dir.read(f"krb5cc_{self.name}")
        if data is None:
            return "absent"
        return "ok" if parse_ccache(data).principal == self.principal else "foreign"

    def target(self):
        return RenewalTarget(
            key=self.name, times=self.times, inspect=self.inspect, renew=self.renew
        )


def make_target(k5, tmp_path, name, backend):
    server = Server(k5, tmp_path, name, backend)
    target = server.target()
    target.cache = server.cache
    return target


def stub_target(key, renew):
    return RenewalTarget(key=key, times=None, inspect=lambda: "ok", renew=renew)


def renewer(targets, executor, clock, margin=600, log=None, lanes=1):
    return Renewer(
        targets=lambda: targets,
        executor=executor,
        margin=margin,
        interval=60,
        max_backoff=60,
        log=log or logging.getLogger("test-renewal"),
        clock=clock,
        lanes=lanes,
    )


async def test_only_tickets_within_the_margin_are_renewed(krb5_env, tmp_path, executor):
    backend = tickets.make_backend("kinit")
    fresh = make_target(krb5_env, tmp_path, "fresh1", backend)
    target = make_target(krb5_env, tmp_path, "ending1", backend)
    ticket = read_ccache(target.cache)
    clock = Clock(ticket.end - 300)  # 5 minutes before the end: within a 10-minute margin
    before = {t.key: open(t.cache, "rb").read() for t in (fresh, target)}
    r = renewer([target], executor, clock)
    assert await r.sweep() == 1
    assert open(target.cache, "rb").read() != before["ending1"], "a new ticket was written"
    assert read_ccache(target.cache).end >= ticket.end
    clock.now = read_ccache(fresh.cache).start  # just issued: nowhere near the margin
    r = renewer([fresh], executor, clock)
    assert await r.sweep() == 0
    assert open(fresh.cache, "rb").read() == before["fresh1"]


def test_short_tickets_are_renewed_at_half_life():
    r = Renewer(targets=list, executor=None, margin=1800, interval=60, max_backoff=60, log=None)
    start, end = 1000, 1000 + 120  # a 2-minute ticket, far shorter than the margin
    assert not r.is_due((start, end), start + 30)
    assert r.is_due((start, end), start + 61)
    assert r.is_due(None, start), "a ticket the hub has no record of is due"
    assert not r.is_due((0, 36000), 36000 - 1801)
    assert r.is_due((0, 36000), 36000 - 1800)


async def test_kdc_down_backs_off_logs_once_and_recovers(
    private_realm, tmp_path, executor, caplog, monkeypatch
):
    monkeypatch.setenv("KRB5_CONFIG", private_realm.env["KRB5_CONFIG"])
    backend = tickets.make_backend("kinit")
    target = make_target(private_realm, tmp_path, "downer", backend)
    before = open(target.cache, "rb").read()
    clock = Clock(read_ccache(target.cache).end)  # expired: due
    r = renewer([target], executor, clock)
    private_realm.stop_kdc()
    caplog.set_level(logging.INFO, logger="test-renewal")
    attempts = 0
    for _ in range(8):
        attempts += await r.sweep()
        clock.now += 3  # a little time passes between sweeps
    # Backoff 1, 2, 4, 8 ...: fewer attempts than sweeps, but it keeps trying.
    assert 2 <= attempts < 8
    failures = [rec for rec in caplog.records if "renewal for downer failed" in rec.message]
    assert len(failures) == 1, "one log line per failure streak"
    assert "kdc_unreachable" in failures[0].message
    assert open(target.cache, "rb").read() == before, "the old cache is kept meanwhile"
    private_realm.start_kdc()
    clock.now += 60  # past any backoff
    assert await r.sweep() == 1
    assert open(target.cache, "rb").read() != before
    assert any("works again" in rec.message for rec in caplog.records)


async def test_backoff_is_capped(tmp_path, executor):
    calls = []

    def failing():
        calls.append(1)
        raise TicketError("kdc_unreachable", "down")

    target = stub_target("x", failing)
    clock = Clock(0)
    r = Renewer(
        targets=lambda: [target],
        executor=executor,
        margin=600,
        interval=60,
        max_backoff=5,
        log=logging.getLogger("test-renewal"),
        clock=clock,
    )
    waits = []
    for _ in range(10):
        await r.sweep()
        waits.append(r._streaks["x"].retry_at - clock.now)
        clock.now = r._streaks["x"].retry_at
    assert len(calls) == 10
    # 1, 2, 4, then the cap of 5 for good, each less up to a tenth (jitter).
    for wait, full in zip(waits, [1, 2, 4] + [5] * 7, strict=True):
        assert 0.9 * full <= wait <= full, waits


async def test_a_stopped_server_is_forgotten(tmp_path, executor):
    def failing():
        raise TicketError("kdc_unreachable", "down")

    targets = [stub_target("gone", failing)]
    r = Renewer(
        targets=lambda: targets,
        executor=executor,
        margin=600,
        interval=60,
        max_backoff=60,
        log=logging.getLogger("test-renewal"),
        clock=Clock(0),
    )
    await r.sweep()
    assert "gone" in r._streaks
    targets.clear()
    assert await r.sweep() == 0
    assert r._streaks == {}


async def test_a_sweep_keeps_to_its_lanes_and_leaves_the_pool_room(tmp_path, executor):
    """12 due tickets, 2 lanes, a pool of 4: never more than 2 renewals at once,
    and a spawn's request submitted mid-sweep runs at once instead of queueing."""
    running, peak, lock = [0], [0], threading.Lock()
    release = threading.Event()

    def slow_renew():
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        release.wait(5)
        with lock:
            running[0] -= 1

    targets = [stub_target(f"u{n}", slow_renew) for n in range(12)]
    r = renewer(targets, executor, Clock(0), lanes=2)
    loop = asyncio.get_running_loop()
    sweep = asyncio.ensure_future(r.sweep())
    while peak[0] < 2:
        await asyncio.sleep(0.01)
    spawn = loop.run_in_executor(executor, lambda: "ticket for a spawn")
    assert await asyncio.wait_for(spawn, 2) == "ticket for a spawn"
    release.set()
    assert await asyncio.wait_for(sweep, 10) == 12
    assert peak[0] == 2


async def test_an_unexpected_error_for_one_user_does_not_stop_the_sweep(executor, caplog):
    """A full disk (OSError) or any other error renewing one user: the others are renewed."""
    renewed = []

    def disk_full():
        raise OSError(28, "No space left on device")

    def works():
        renewed.append("ok")
        return (0, 36000)

    targets = [stub_target("full", disk_full), stub_target("fine", works)]
    r = renewer(targets, executor, Clock(0))
    caplog.set_level(logging.WARNING, logger="test-renewal")
    assert await r.sweep() == 2
    assert renewed == ["ok"]
    assert "full" in r._streaks and "fine" not in r._streaks
    assert "No space left on device" in caplog.text


def test_due_time_is_the_margin_or_half_life():
    assert due_time((0, 36000), 1800) == 36000 - 1800
    assert due_time((0, 60), 1800) == 30


async def test_the_next_sweep_is_planned_by_the_earliest_due_ticket(executor):
    """Not on a fixed interval: a ticket due in 5 s is looked at in 5 s, not in 60."""
    clock = Clock(1000)
    soon = RenewalTarget(key="soon", times=(1000, 1010), inspect=lambda: "ok", renew=None)
    later = RenewalTarget(key="later", times=(1000, 1000 + 36000), inspect=lambda: "ok", renew=None)
    r = renewer([soon, later], executor, clock)
    assert await r.sweep() == 0
    assert r.next_wait() == pytest.approx(5)
    clock.now = 1004.9
    assert r.next_wait() == MIN_WAIT, "never sooner than MIN_WAIT"
    r = renewer([later], executor, clock)
    await r.sweep()
    assert r.next_wait() == pytest.approx(60), "no later than the interval"


async def test_a_renewed_tickets_new_due_time_is_planned(executor):
    clock = Clock(1000)

    def renew():
        return (clock.now, clock.now + 4)  # a 4-second ticket: due at half life

    target = RenewalTarget(key="short", times=(990, 1001), inspect=lambda: "ok", renew=renew)
    r = renewer([target], executor, clock)
    assert await r.sweep() == 1
    assert r.next_wait() == pytest.approx(2)


async def test_a_cache_holding_another_principal_is_due_whatever_the_record_says(executor):
    calls = []
    target = RenewalTarget(
        key="swapped",
        times=(1000, 1000 + 36000),  # the hub's record: fresh
        inspect=lambda: "foreign",
        renew=lambda: calls.append(1) or (1000, 37000),
    )
    r = renewer([target], executor, Clock(1001))
    assert await r.sweep() == 1
    assert calls == [1]


async def test_stop_ends_renewal_even_just_after_a_wake(executor):
    """A spawn wakes the renewer and the hub stops it at once: on Python 3.11 the
    wait's cancellation is lost when the wake lands first; the loop still ends."""
    r = renewer([], executor, Clock(0))
    task = r.start()
    deadline = time.monotonic() + 10
    while not r._wake._waiters:  # the loop waits for its next look
        assert time.monotonic() < deadline, "the renewer never waited"
        await asyncio.sleep(0.01)
    r.wake()
    stopping = asyncio.ensure_future(r.stop())
    done, _ = await asyncio.wait({stopping}, timeout=5)
    ended = task.done()
    task.cancel()  # a second cancel ends a loop that lost the first
    await stopping
    assert done == {stopping} and ended, "the renewer kept running after stop()"
