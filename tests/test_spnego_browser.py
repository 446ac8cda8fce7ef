"""Single sign-on in a real browser: headless Chromium negotiates with the user's ticket.

The user's desktop session is a ticket cache from ``kinit -f`` (forwardable)
and the realm's krb5.conf, both in Chromium's process environment. The test
host is a name of its own (random per run, so no other run's policy names it),
mapped to 127.0.0.1 with ``--host-resolver-rules``; the service has the key of
``HTTP/<that name>@REALM``. Chromium negotiates only where a managed policy
allows it (support.browser.negotiate_policy, removed afterwards).

Against Apache with mod_auth_gssapi (support.httpd), the harness itself:
Chromium without the policy gets the 401 page though the ticket is in its
environment; with the policy it is let in as the user, on its first request.
"""

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile

import pytest
from selenium.webdriver.common.by import By

import support.browser
from support.realm import add_principal


@pytest.fixture
def desktop(realm, make_user):
    """A user's desktop session: an account, its principal (password = the account's),
    a forwardable TGT in a cache of its own, and the environment a browser gets."""
    account = make_user()
    principal = f"{account.name}@{realm.realm}"
    realm.addprinc(principal, account.password)
    directory = tempfile.mkdtemp(prefix="kerbauth-desktop-")
    try:
        env = {"KRB5_CONFIG": realm.env["KRB5_CONFIG"], "KRB5CCNAME": f"FILE:{directory}/cc"}
        kinit = subprocess.run(
            ["kinit", "-f", principal],
            input=account.password + "\n",
            env={"PATH": os.environ["PATH"], **env},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert kinit.returncode == 0, kinit.stderr
        yield account, principal, env
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_chromium_negotiates_with_apache_only_under_the_policy(realm, spnego_httpd, desktop):
    account, principal, env = desktop
    httpd = spnego_httpd(realm)
    host = f"sso-{secrets.token_hex(4)}.kerbauth.test"
    www = pwd.getpwnam("www-data")
    # mod_auth_gssapi accepts for any principal of its keytab: the test host's joins it.
    keytab = os.path.join(httpd.root, "http.keytab")
    add_principal(realm, f"HTTP/{host}", keytab=keytab, uid=www.pw_uid, gid=www.pw_gid)
    url = f"http://{host}:{httpd.port}/whoami"
    resolve = f"--host-resolver-rules=MAP {host} 127.0.0.1"

    def body(driver):
        driver.get(url)
        return driver.find_element(By.TAG_NAME, "body").text

    with support.browser.chromium(resolve, env=env, negotiate=True) as driver:
        assert "Unauthorized" in body(driver), httpd.log_text()
    policies = os.path.dirname(support.browser.POLICY_DIR)
    had_policies = os.path.exists(policies)
    with support.browser.negotiate_policy(host) as policy:
        with support.browser.chromium(resolve, env=env, negotiate=True) as driver:
            assert body(driver) == principal, httpd.log_text()
    assert not os.path.exists(policy)
    assert os.path.exists(policies) == had_policies
