"""Single sign-on in a real browser: headless Chromium, with and without the Negotiate policy.

The user's desktop session is a forwardable TGT (``kinit -f``) in a cache of
its own and the realm's krb5.conf, both in Chromium's process environment, as
a desktop's browser has them. The hub (the PAM example with SPNEGO on and
password tickets) has the key of ``HTTP/<host>`` for a test host of its own
(random per run, so no other run's policy names it), mapped to 127.0.0.1 with
``--host-resolver-rules``.

Chromium without the policy, the ticket in its environment all the same,
gets the hub's 401 page, the login form, and logs in with the password.
Chromium with the managed policy an administrator deploys
(support.browser.negotiate_policy: ``AuthServerAllowlist`` and
``AuthNegotiateDelegateAllowlist`` for the test host only, removed
afterwards) opening the hub is logged in without typing, spawns, and ``klist
-f`` in a JupyterLab terminal shows the user's ticket with the forwarded flag:
the TGT the browser delegated, where the form's login got one from the
password.
"""

import os
import re
import secrets
import subprocess

import support.browser
from support.edge import server_environment
from support.served import PASSWORD
from support.spnego import hub_lines, service_keytab

# The hub's log line of a login by SPNEGO ("<principal> logged in with SPNEGO as <user>").
SPNEGO_LOGIN = "logged in with SPNEGO as"


def ticket_flags(env, realm):
    """The flags ``klist -f`` shows for the TGT in the cache of a server's ``env``."""
    listed = subprocess.run(
        ["klist", "-f", env["KRB5CCNAME"]], capture_output=True, text=True, timeout=30
    )
    assert listed.returncode == 0, listed.stderr
    flags = re.search(rf"krbtgt/{realm.realm}@{realm.realm}\n.*?Flags: (\w+)", listed.stdout, re.S)
    assert flags, listed.stdout
    return flags.group(1)


def test_chromium_logs_in_with_the_form_without_the_policy_and_negotiates_with_it(
    realm, edge_hub, make_user, client_tickets, spnego_rcache, tmp_path
):
    host = f"hub-{secrets.token_hex(4)}.kerbauth.test"
    keytab = service_keytab(realm, str(tmp_path), host)  # HTTP/<host>, root's, 0600
    # SPNEGO on a hub with password tickets: the form's login gets a ticket too.
    env = {**spnego_rcache, "JUPYTERHUB_CRYPT_KEY": "ab" * 32}
    hub = edge_hub(PASSWORD + hub_lines(keytab), env=env)
    account = make_user(groups=("hub-users",))
    user = account.name
    # The desktop: the user's forwardable TGT (kinit -f), their password the account's.
    desktop = client_tickets(realm, user, password=account.password)
    principal = desktop.principal
    base = f"http://{host}:{hub.port}"
    resolve = f"--host-resolver-rules=MAP {host} 127.0.0.1"
    browser = {"env": desktop.env, "negotiate": True}

    # Without the policy, though the ticket is in its environment: the form (the
    # hub's 401 page), and a login with the password.
    with support.browser.chromium(resolve, **browser) as driver:
        support.browser.log_in(driver, base, user, account.password)
    log = hub.log_text()
    assert re.search(r" 401 GET /hub/login\b", log) and SPNEGO_LOGIN not in log
    # That server's ticket came from the password: not a forwarded one.
    assert "f" not in ticket_flags(server_environment(hub, user), realm)
    hub.stop_server(user)

    policies = os.path.dirname(support.browser.POLICY_DIR)
    had_policies = os.path.exists(policies)
    with support.browser.negotiate_policy(host) as policy:
        with support.browser.chromium(resolve, **browser) as driver:
            # With it: opening the hub logs in without typing, and spawns.
            driver.get(f"{base}/hub/")
            support.browser.wait_for_lab(driver, base, user)
            assert f"{principal} {SPNEGO_LOGIN} {user}" in hub.log_text()
            # The notebook's ticket is the one the browser delegated: forwarded (f).
            shown = support.browser.klist_in_terminal(driver, user, principal, "klist -f")
    flags = re.search(rf"krbtgt/{realm.realm}@{realm.realm}.*?Flags: ([A-Za-z]+)", shown, re.S)
    assert flags and "f" in flags.group(1), shown
    assert "f" in ticket_flags(server_environment(hub, user), realm)
    assert not os.path.exists(policy)
    assert os.path.exists(policies) == had_policies
