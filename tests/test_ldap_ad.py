"""Active Directory's bind refusals, against a real AD (Samba's AD DC, support.samba).

For each account state AD reports on a bind (password expired, must change,
locked, disabled, account expired, logon hours, workstations) a login with
the right password tells the user that in one sentence on the login form
(403) and logs the code; a wrong password, on any of these accounts but the
locked one, and a name with no account, get only JupyterHub's
"Invalid username or password". The authenticator is configured as
docs/active-directory.md shows for a UPN bind with ``login_domains``.
"""

import html
import logging

import pytest
from tornado import web
from traitlets.config import Config

from kerbauth import KerberosLDAPAuthenticator
from kerbauth.auth.ldap.ad_errors import MESSAGES
from support.samba import DNS_DOMAIN, NETBIOS_DOMAIN

GENERIC = "Invalid username or password"

# user made by support.samba -> the Windows error AD gives for their right password
STATES = {
    "expired": "532",
    "mustchange": "773",
    "locked": "775",
    "disabled": "533",
    "acctexp": "701",
    "nohours": "530",
    "elsewhere": "531",
}


def ldap_lines(samba_ad):
    """The LDAP part of a config, as docs/active-directory.md's UPN bind."""
    return {
        "server_address": [f"{samba_ad.address}:389"],
        "tls_ca_file": samba_ad.ca_file,
        "bind_dn_template": [f"{{username}}@{DNS_DOMAIN}"],
        "login_domains": [NETBIOS_DOMAIN, DNS_DOMAIN],
        "allow_all": True,
        # user_info_attributes is left at its default: after a bind by UPN there is no
        # entry to read it from, and none is read (the hub test's logins work).
    }


@pytest.fixture
def authenticator(samba_ad, tmp_path, ccache_dir):
    c = Config()
    c.KerberosTickets.keytab_template = str(tmp_path / "{username}.keytab")
    c.KerberosTickets.ccache_dir = ccache_dir
    for name, value in ldap_lines(samba_ad).items():
        setattr(c.KerberosLDAPAuthenticator, name, value)
    a = KerberosLDAPAuthenticator(config=c)
    a.log = logging.getLogger("test-ldap-ad")
    return a


async def login(authenticator, username, password):
    return await authenticator.get_authenticated_user(
        None, {"username": username, "password": password}
    )


@pytest.mark.parametrize("user", sorted(STATES))
async def test_each_account_state_is_told_and_logged(samba_ad, authenticator, caplog, user):
    code = STATES[user]
    password = samba_ad.passwords[user]
    caplog.set_level(logging.INFO, logger="test-ldap-ad")
    # The three forms users type (login_domains) reach the same account.
    for typed in (user, f"{NETBIOS_DOMAIN}\\{user}", f"{user}@{DNS_DOMAIN}"):
        caplog.clear()
        with pytest.raises(web.HTTPError) as refused:
            await login(authenticator, typed, password)
        assert refused.value.status_code == 403
        message = refused.value.log_message
        assert message == MESSAGES[code][1]
        # One sentence, shown as it is (the login form escapes it).
        assert message.endswith(".") and message.count(". ") == 0 and "%" not in message
        assert GENERIC.lower() not in message.lower()
        logged = caplog.text
        assert f"refused by Active Directory with data {code} ({MESSAGES[code][0]})" in logged
        assert f"{user}@{DNS_DOMAIN}" in logged
        assert password not in logged
    # A wrong password says nothing about the account, except a lock (checked
    # by AD before the password, see kerbauth.auth.ldap.ad_errors).
    caplog.clear()
    if code == "775":
        with pytest.raises(web.HTTPError) as refused:
            await login(authenticator, user, "Not-" + password)
        assert refused.value.log_message == MESSAGES["775"][1]
    else:
        assert await login(authenticator, user, "Not-" + password) is None
        assert f"data {code}" not in caplog.text
        assert "refused the login of" in caplog.text


async def test_a_wrong_password_or_no_account_gets_only_the_generic_refusal(
    samba_ad, authenticator, caplog
):
    caplog.set_level(logging.INFO, logger="test-ldap-ad")
    good = samba_ad.passwords["good"]
    assert (await login(authenticator, f"{NETBIOS_DOMAIN}\\Good", good))["name"] == "good"
    caplog.clear()
    assert await login(authenticator, "good", "Not-" + good) is None
    assert await login(authenticator, "nobody-here", good) is None
    assert "Active Directory" not in caplog.text
    # AD said 52e both times: what the refusal is, as the directory wrote it.
    result = samba_ad.bind_result(samba_ad.upn("nobody-here"), good)
    assert result["result"] == 49 and "data 52e" in result["message"]


async def test_a_search_then_bind_login_is_told_too(samba_ad, authenticator):
    """The other way to find the user (lookup_dn, AD's usual setup) binds the found DN."""
    authenticator.bind_dn_template = []
    authenticator.lookup_dn = True
    authenticator.user_search_base = "CN=Users,DC=ad,DC=kerbauth,DC=test"
    authenticator.user_attribute = "sAMAccountName"
    authenticator.search_bind_dn = f"Administrator@{DNS_DOMAIN}"
    authenticator.search_bind_password = samba_ad.admin_password
    with pytest.raises(web.HTTPError) as refused:
        await login(authenticator, "mustchange", samba_ad.passwords["mustchange"])
    assert refused.value.log_message == MESSAGES["773"][1]
    good = samba_ad.passwords["good"]
    assert (await login(authenticator, "good", good))["auth_state"]["ldap_dn"] == (
        "CN=good,CN=Users,DC=ad,DC=kerbauth,DC=test"
    )


def hub_config(samba_ad, ccache_dir, tmp_path):
    lines = ['c.JupyterHub.authenticator_class = "kerberos-ldap"']
    lines += [f"c.KerberosLDAPAuthenticator.{k} = {v!r}" for k, v in ldap_lines(samba_ad).items()]
    lines += [
        f"c.KerberosTickets.keytab_template = {str(tmp_path / '{username}.keytab')!r}",
        f"c.KerberosTickets.ccache_dir = {ccache_dir!r}",
    ]
    return "\n".join(lines) + "\n"


def test_the_hub_login_form_shows_the_reason(samba_ad, hub_factory, ccache_dir, tmp_path):
    """Over HTTP: the form comes back (403) with AD's reason, or with the generic line."""
    hub = hub_factory(hub_config(samba_ad, ccache_dir, tmp_path))
    response = hub.login("expired", samba_ad.passwords["expired"])
    assert response.status_code == 403
    page = html.unescape(response.text)
    assert MESSAGES["532"][1] in page and GENERIC not in page
    assert 'name="password"' in response.text  # the login form, not an error page
    response = hub.login("expired", "Not-" + samba_ad.passwords["expired"])
    assert response.status_code == 403
    page = html.unescape(response.text)
    assert GENERIC in page and MESSAGES["532"][1] not in page
    assert "data 532 (password expired)" in hub.log_text()
    assert hub.login("good", samba_ad.passwords["good"]).status_code == 302
