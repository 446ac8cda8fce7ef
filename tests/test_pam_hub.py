"""PAM mode end to end: the edge-node example in a real JupyterHub, with real local users.

The hub (``edge_hub``, tests/support/edge.py) runs examples/pam/jupyterhub_config.py
as it is, with a PAM service of the test's own (pam_unix), so nothing depends
on the host's PAM stack. The users are real accounts with real passwords and
real keytabs in their homes, as the example expects.
"""

import concurrent.futures
import html
import os
import pwd
import secrets
import stat
import subprocess
import sys
import threading
import time

import pytest

from support.edge import give_keytab, server_environment
from support.realm import klist
from support.users import Account


def test_login_spawn_klist_as_the_user_and_cache_gone_after_stop(
    edge_hub, make_user, krb5_env, ccache_dir
):
    user = make_user(groups=("hub-users",))
    principal, _ = give_keytab(krb5_env, user)
    hub = edge_hub()

    session, response = hub.login_session(user.name, user.password)
    assert response.status_code == 302, response.text
    assert session.get(f"{hub.url}/hub/home", timeout=30).status_code == 200
    hub.start_server(user.name)

    ccname = server_environment(hub, user.name)["KRB5CCNAME"]
    cache = os.path.join(ccache_dir, f"krb5cc_{user.name}")
    assert ccname == f"FILE:{cache}"
    st = os.lstat(cache)
    assert stat.S_ISREG(st.st_mode)
    assert (st.st_uid, st.st_gid) == (user.uid, user.gid)
    assert stat.S_IMODE(st.st_mode) == 0o600
    out = klist(ccname, krb5_env.env, user=user.name)
    assert out.returncode == 0, out.stderr
    assert f"Default principal: {principal}" in out.stdout
    assert f"krbtgt/{krb5_env.realm}@{krb5_env.realm}" in out.stdout

    hub.stop_server(user.name)
    assert not os.path.lexists(cache)


def test_wrong_empty_and_hostile_logins_are_refused_and_the_hub_stays_healthy(edge_hub, make_user):
    user = make_user(groups=("hub-users",))
    outsider = make_user()  # a valid account, but not in hub-users
    hub = edge_hub()
    assert hub.login(user.name, "not-the-password").status_code == 403
    assert hub.login(user.name, "").status_code == 403
    assert hub.login(user.name, "   ").status_code == 403
    assert hub.login(outsider.name, outsider.password).status_code == 403
    for name in ["../../etc/passwd", "root\n", "a" * 300, "-rf", "user name"]:
        assert hub.login(name, user.password).status_code == 403, name
    assert hub.health().status_code == 200
    assert hub.login(user.name, user.password).status_code == 302
    users = {u["name"] for u in hub.api("GET", "/users").json()}
    assert users == {user.name}
    log = hub.log_text()
    assert user.password not in log and outsider.password not in log
    assert "PAM refused the login" in log


def test_a_burst_of_50_logins_is_answered_right_while_health_keeps_answering(edge_hub, make_user):
    users = [make_user(groups=("hub-users",)) for _ in range(5)]
    # 25 wrong passwords at once from one address is what the login limits
    # throttle (tests/test_pam_flood.py); here the answers themselves are checked.
    hub = edge_hub(
        "c.KerberosPAMAuthenticator.login_max_failures = 0\n"
        "c.KerberosPAMAuthenticator.login_source_concurrency = 0\n"
    )
    attempts = [
        (u.name, u.password if i % 2 == 0 else u.password + "x", 302 if i % 2 == 0 else 403)
        for i in range(50)
        for u in [users[i % len(users)]]
    ]
    done = threading.Event()
    health = []

    def poll_health():
        while not done.is_set():
            health.append(hub.health().status_code)
            time.sleep(0.05)

    poller = threading.Thread(target=poll_health)
    poller.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(lambda a: hub.login(a[0], a[1]).status_code, attempts))
    finally:
        done.set()
        poller.join()
    assert answers == [expected for _, _, expected in attempts]
    assert len(health) >= 3 and set(health) == {200}


def test_missing_keytab_refuses_the_spawn_with_an_actionable_message(
    edge_hub, make_user, ccache_dir
):
    user = make_user(groups=("hub-users",))
    hub = edge_hub()
    session, response = hub.login_session(user.name, user.password)
    assert response.status_code == 302
    # What the browser shows after login: the spawn page, which fails at once.
    page = session.get(f"{hub.url}/hub/spawn", timeout=60)
    assert page.status_code == 500
    text = html.unescape(page.text)
    assert "No Kerberos ticket could be obtained for you" in text
    assert "no usable keytab for your account" in text
    assert f"{user.home}/" not in text  # the path is for the log, not for the user
    keytab = os.path.join(user.home, f"{user.name}.wb1.keytab")
    assert f"keytab {keytab}" in hub.log_text()
    assert hub.server(user.name) is None
    assert not os.path.lexists(os.path.join(ccache_dir, f"krb5cc_{user.name}"))


def test_missing_keytab_with_required_false_starts_the_server_without_a_ticket(edge_hub, make_user):
    user = make_user(groups=("hub-users",))
    hub = edge_hub("c.KerberosTickets.required = False\n")
    assert hub.login(user.name, user.password).status_code == 302
    hub.start_server(user.name)
    assert "KRB5CCNAME" not in server_environment(hub, user.name)
    assert "starting" in hub.log_text() and "without a Kerberos ticket" in hub.log_text()


def test_admin_by_admin_groups(edge_hub, make_user):
    admin = make_user(groups=("hub-users", "hub-admins"))
    user = make_user(groups=("hub-users",))
    hub = edge_hub()
    assert hub.login(admin.name, admin.password).status_code == 302
    assert hub.login(user.name, user.password).status_code == 302
    assert hub.api("GET", f"/users/{admin.name}").json()["admin"] is True
    assert hub.api("GET", f"/users/{user.name}").json()["admin"] is False


def test_pam_normalize_username_keeps_a_name_without_an_account_instead_of_failing(
    edge_hub, make_user
):
    """With pam_normalize_username, JupyterHub looks every configured name up in the
    user database and raises KeyError for one with no account (yet), which would stop
    the hub at startup when allowed_users names one. kerbauth logs the name and keeps
    it as written, so the hub starts and the others log in."""
    user = make_user(groups=("hub-users",))
    ghost = f"{user.name}x"  # a valid name with no account
    hub = edge_hub(
        "c.KerberosPAMAuthenticator.pam_normalize_username = True\n"
        f"c.KerberosPAMAuthenticator.allowed_users = {{{ghost!r}}}\n"
    )
    assert f"no local account {ghost}" in hub.log_text()
    assert hub.login(user.name, user.password).status_code == 302
    assert hub.login(ghost, user.password).status_code == 403  # PAM knows no such user
    assert hub.health().status_code == 200


# A PAM stack that hangs (pam_exec running sleep, as a stuck sssd or KDC would).
HANGING_SERVICE = """\
auth     requisite pam_exec.so quiet /usr/bin/sleep 20
auth     required  pam_unix.so nodelay
account  required  pam_unix.so
"""


def test_a_hanging_pam_stack_costs_the_user_pam_timeout_and_the_hub_nothing(
    edge_hub, make_user, pam_service
):
    user = make_user(groups=("hub-users",))
    hub = edge_hub(
        "c.KerberosPAMAuthenticator.pam_timeout = 2\n", service=pam_service(HANGING_SERVICE)
    )
    answers = []
    done = threading.Event()

    def poll_health():
        while not done.is_set():
            started = time.monotonic()
            answers.append((hub.health().status_code, time.monotonic() - started))
            time.sleep(0.05)

    poller = threading.Thread(target=poll_health)
    poller.start()
    started = time.monotonic()
    try:
        response = hub.login(user.name, user.password)
    finally:
        seconds = time.monotonic() - started
        done.set()
        poller.join()
    assert response.status_code == 503
    assert "did not answer in time" in html.unescape(response.text)
    assert 1.9 < seconds < 5
    assert len(answers) >= 10 and all(status == 200 for status, _ in answers)
    assert max(t for _, t in answers) < 0.5
    assert "pam_timeout" in hub.log_text()


# --- pam_krb5 in the stack: no ticket may land in the hub's own cache -----------------------

# pam_krb5 checks the password against the test realm (the account's Unix
# password is a different one, so a login that works went through pam_krb5).
KRB5_SERVICE = """\
auth     required  pam_krb5.so minimum_uid=1000
account  required  pam_unix.so
"""

PAMELA_DEFAULT = """
import sys, pamela
pamela.authenticate(sys.argv[1], sys.stdin.read(), service=sys.argv[2])
"""


@pytest.fixture
def krb5_user(make_user, krb5_env):
    user = make_user(groups=("hub-users",))
    password = f"krb-{user.password}"
    krb5_env.addprinc(f"{user.name}@{krb5_env.realm}", password)
    give_keytab(krb5_env, user)
    return user, password


def test_pamela_default_would_leak_the_ticket_into_the_callers_cache(
    krb5_user, krb5_env, pam_service, tmp_path
):
    """The hazard the next test guards against, shown with pamela's defaults."""
    user, password = krb5_user
    hub_cache = tmp_path / "krb5cc_hub"
    subprocess.run(
        [sys.executable, "-c", PAMELA_DEFAULT, user.name, pam_service(KRB5_SERVICE)],
        input=password,
        text=True,
        check=True,
        env={**os.environ, **krb5_env.env, "KRB5CCNAME": f"FILE:{hub_cache}"},
    )
    assert hub_cache.exists()
    assert hub_cache.stat().st_uid == user.uid


def test_pam_krb5_in_the_stack_leaves_the_hubs_cache_untouched(
    edge_hub, krb5_user, pam_service, tmp_path, ccache_dir, krb5_env
):
    user, password = krb5_user
    hub_cache = tmp_path / "krb5cc_hub"
    before = set(os.listdir("/tmp"))
    hub = edge_hub(service=pam_service(KRB5_SERVICE), env={"KRB5CCNAME": f"FILE:{hub_cache}"})
    assert hub.login(user.name, user.password).status_code == 403  # not the Kerberos one
    for _ in range(3):
        assert hub.login(user.name, password).status_code == 302
    assert not hub_cache.exists()
    assert not [n for n in set(os.listdir("/tmp")) - before if n.startswith("krb5cc")]
    # The server's ticket still comes from kerbauth, into the user's own cache.
    hub.start_server(user.name)
    out = klist(f"FILE:{ccache_dir}/krb5cc_{user.name}", krb5_env.env, user=user.name)
    assert out.returncode == 0 and user.name in out.stdout
    assert not hub_cache.exists()


# --- one account, one name: a login never ends as another account (issue 11) ----------------


@pytest.fixture
def capitalised_twin(make_user):
    """``twin(account, same_uid=False)``: a local account named like ``account`` with a capital.

    ``Kbt-1234abcd`` next to ``kbt-1234abcd``: its own uid, home and password
    (useradd needs ``--badname`` for a capital), or, with ``same_uid``, a
    second name for the same uid (as sssd answers ``Alice`` for ``alice``).
    Removed at teardown.
    """
    made = []

    def twin(account, same_uid=False):
        name = account.name[0].upper() + account.name[1:]
        password = secrets.token_urlsafe(12)
        argv = ["useradd", "--badname", "--shell", "/bin/sh", "--groups", "hub-users"]
        if same_uid:
            argv += ["--non-unique", "--uid", str(account.uid), "--gid", str(account.gid)]
            argv += ["--no-create-home", "--home-dir", account.home]
        else:
            argv += ["--create-home", "--user-group"]
        subprocess.run([*argv, name], check=True, capture_output=True)
        made.append((name, same_uid))
        subprocess.run(
            ["chpasswd"], input=f"{name}:{password}\n", text=True, check=True, capture_output=True
        )
        entry = pwd.getpwnam(name)
        return Account(name, password, entry.pw_uid, entry.pw_gid, entry.pw_dir)

    try:
        yield twin
    finally:
        for name, same_uid in reversed(made):
            if not same_uid:
                subprocess.run(["pkill", "-KILL", "-u", name], check=False)
            argv = ["userdel", "--force"] + ([] if same_uid else ["--remove"])
            subprocess.run([*argv, name], check=False, capture_output=True)
            subprocess.run(["groupdel", name], check=False, capture_output=True)


def hub_users(hub):
    return {u["name"] for u in hub.api("GET", "/users").json()}


def test_a_capitalised_account_never_logs_in_as_its_lowercase_namesake(
    edge_hub, make_user, capitalised_twin, krb5_env
):
    """``Kbt-x`` (its own account and password) would pass PAM and JupyterHub would
    then lowercase it to ``kbt-x``: another account's server, uid and ticket. Refused,
    with a message saying why, before PAM is asked."""
    bob = make_user(groups=("hub-users",))
    give_keytab(krb5_env, bob)
    capital = capitalised_twin(bob)
    assert capital.uid != bob.uid
    hub = edge_hub()

    response = hub.login(capital.name, capital.password)
    assert response.status_code == 403
    text = html.unescape(response.text)
    assert f"You cannot log in as '{capital.name}' here" in text
    assert f"would use that name as '{bob.name}', which is a different account" in text
    assert bob.name not in hub_users(hub)
    log = hub.log_text()
    why = f"PAM login of '{capital.name}' refused: JupyterHub would log it in as '{bob.name}'"
    assert why in log
    assert f"uid {capital.uid} is not uid {bob.uid}" in log
    assert capital.password not in log
    # The lowercase account itself logs in as itself.
    assert hub.login(bob.name, bob.password).status_code == 302
    assert hub_users(hub) == {bob.name}


def test_with_pam_normalize_username_a_capitalised_account_logs_in_as_itself(
    edge_hub, make_user, capitalised_twin
):
    """pam_normalize_username round-trips the name through the account's uid, so
    ``Kbt-x`` stays ``Kbt-x`` (a hub user of its own) and ``kbt-x`` stays ``kbt-x``."""
    bob = make_user(groups=("hub-users",))
    capital = capitalised_twin(bob)
    hub = edge_hub("c.KerberosPAMAuthenticator.pam_normalize_username = True\n")
    assert hub.login(capital.name, capital.password).status_code == 302
    assert hub.login(bob.name, bob.password).status_code == 302
    assert hub.login(capital.name, bob.password).status_code == 403  # each its own password
    assert hub_users(hub) == {capital.name, bob.name}


def test_two_names_of_one_account_still_log_in_as_the_hub_name(
    edge_hub, make_user, capitalised_twin
):
    """Two names, one uid (what sssd does for ``Alice`` and ``alice`` with
    case-insensitive names): the same account, so the login goes on, as ``kbt-x``."""
    alice = make_user(groups=("hub-users",))
    other_name = capitalised_twin(alice, same_uid=True)
    assert other_name.uid == alice.uid
    hub = edge_hub()
    assert hub.login(other_name.name, other_name.password).status_code == 302
    assert hub_users(hub) == {alice.name}
