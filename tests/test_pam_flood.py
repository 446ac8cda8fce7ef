"""A flood of wrong PAM passwords from one address costs its sender, not the other users.

A real hub (the edge-node example), a real PAM service with the real fail
delay (pam_faildelay, 2 s, and pam_unix without ``nodelay``), a flood client
on 127.0.0.2 sending 6 wrong passwords a second for 5 s, and a real user
logging in from 127.0.0.1. Without the login limits the flood holds all four
PAM threads in the fail delay and the user's login waits behind it (36-61 s
were measured, then 503); with them it takes about its unloaded time.
"""

import statistics

from support.clients import login_from, logins_during_flood, unloaded_login_time

FAIL_DELAY_SERVICE = """\
auth     required  pam_faildelay.so delay=2000000
auth     required  pam_unix.so
account  required  pam_unix.so
"""

FLOOD_RATE = 6  # wrong passwords a second
FLOOD_SECONDS = 5


def test_a_failed_login_flood_from_one_address_does_not_slow_another_users_login(
    edge_hub, make_user, pam_service
):
    user = make_user(groups=("hub-users",))
    target = make_user(groups=("hub-users",))  # the flood's wrong passwords are for them...
    names = [target.name, f"{target.name}x", "kbt-nobody"]  # ...and for names with no account
    hub = edge_hub(service=pam_service(FAIL_DELAY_SERVICE))

    # The fail delay is real: one wrong password costs about 2 s.
    status, seconds, _ = login_from(hub, "127.0.0.3", target.name, "wrong")
    assert status == 403 and seconds > 1.0

    unloaded = unloaded_login_time(hub, "127.0.0.1", user.name, user.password)
    flood, during = logins_during_flood(
        hub,
        flood=lambda i: (names[i % len(names)], f"wrong{i}"),
        rate=FLOOD_RATE,
        seconds=FLOOD_SECONDS,
        user=(user.name, user.password),
    )
    assert hub.health().status_code == 200

    statuses = [status for status, _, _ in flood]
    print(f"unloaded {unloaded:.3f} s; during: {[round(s, 3) for _, s in during]}; {statuses}")
    # The user: every login succeeded, at about its unloaded time.
    assert len(during) >= 5
    assert all(status == 302 for status, _ in during), during
    typical = statistics.median(seconds for _, seconds in during)
    assert typical <= 2 * unloaded, (unloaded, during)
    assert max(seconds for _, seconds in during) < 1.0, (unloaded, during)  # < one fail delay

    # The flood: refused (403 after PAM, 429 from the limits), most of it by the limits.
    assert len(flood) == FLOOD_RATE * FLOOD_SECONDS
    assert set(statuses) <= {403, 429}
    refused = [(seconds, text) for status, seconds, text in flood if status == 429]
    assert len(refused) >= len(flood) // 2, statuses
    assert any("Too many failed logins; wait a minute" in text for _, text in refused)
    # A refusal never waits longer than login_wait (10 s) for a turn; and it costs
    # no thread, so those waiting for one are no cost to the user above.
    assert max(seconds for seconds, _ in refused) < 10 + 2
    # At most 2 of the flood's attempts held a PAM thread at a time.
    log = hub.log_text()
    checked = log.count("@127.0.0.2: [PAM Error")
    assert checked == statuses.count(403)
    assert checked <= 2 * (FLOOD_SECONDS + 4) / 1.0  # 2 at a time, >= 1 s each (the delay)
    # The hub saw the two addresses apart (X-Forwarded-For from the proxy).
    assert "from 127.0.0.2 refused (429): source throttled after failed logins" in log
    assert "127.0.0.1 refused" not in log
