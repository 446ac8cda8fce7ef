"""``kerbauth doctor`` against the real realm and directory, healthy and broken.

The doctor runs as its console script, on a config file, as an administrator
would run it; each broken case asserts the exit status and the exact line that
names the fault.
"""

import os
import secrets
import shutil
import subprocess
import tempfile

import pytest

from kerbauth import doctor
from support.doctor import run_doctor
from support.realm import add_principal, start_realm

# --- helpers ---------------------------------------------------------------------------


def write_config(path, authenticator="kerberos-pam", **options):
    """A jupyterhub_config.py setting ``KerberosTickets.<name>`` for each option."""
    lines = [f"c.JupyterHub.authenticator_class = {authenticator!r}"]
    for name, value in options.items():
        section, _, option = name.rpartition("__")
        lines.append(f"c.{section or 'KerberosTickets'}.{option} = {value!r}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def statuses(lines):
    return {name: status for name, (status, _) in lines.items()}


@pytest.fixture
def site_dir():
    """A directory for keytabs, caches and the config file, reachable by a test user."""
    path = tempfile.mkdtemp(prefix="kerbauth-doctor-test-")
    os.chmod(path, 0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def local_user():
    """A local account (no home directory) for the doctor to find; removed afterwards."""
    name = f"kbdoc-{secrets.token_hex(3)}"
    subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True
    )
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False)


def kerberos_site(k5, site_dir, user, **options):
    """A PAM-mode config with ``user``'s principal and keytab (mode 0600, owned by root)."""
    keytab = os.path.join(site_dir, f"{user}.keytab")
    if not os.path.exists(keytab):
        add_principal(k5, user, keytab)
    cc = os.path.join(site_dir, "cc")
    if not os.path.exists(cc):
        os.mkdir(cc, 0o711)
        os.chmod(cc, 0o711)
    options.setdefault("keytab_template", os.path.join(site_dir, "{username}.keytab"))
    options.setdefault("ccache_dir", cc)
    return write_config(os.path.join(site_dir, "jupyterhub_config.py"), **options), keytab


def krb5_env(k5):
    env = {k: v for k, v in os.environ.items() if k != "KRB5CCNAME"}
    env["KRB5_CONFIG"] = k5.env["KRB5_CONFIG"]
    return env


# --- Kerberos: healthy and broken --------------------------------------------------------


@pytest.mark.parametrize("backend", ["krb5", "kinit"])
def test_a_healthy_kerberos_site_passes_every_check(realm, site_dir, local_user, backend):
    config, _ = kerberos_site(realm, site_dir, local_user, backend=backend)
    code, lines, output = run_doctor(config, krb5_env(realm), "--user", local_user)
    assert code == 0, output
    assert statuses(lines) == {
        "config": "ok",
        "startup": "ok",
        "krb5.conf": "ok",
        "kdc": "ok",
        "ccache_dir": "ok",
        "account": "ok",
        "keytab": "ok",
        "ticket": "ok",
        "hadoop": "skip",  # no --hadoop-conf-dir: tests/test_doctor_hadoop.py
        "jvm": "skip",
    }, output
    assert f"KDC of {realm.realm} answers at 127.0.0.1:{realm.portbase}/tcp" in lines["kdc"][1]
    assert f"{local_user}@{realm.realm} kvno 1" in lines["keytab"][1]
    assert f"got a ticket for {local_user}@{realm.realm} through {backend}" in lines["ticket"][1]
    # The ticket was requested into a private directory, removed afterwards.
    assert os.listdir(os.path.join(site_dir, "cc")) == []


def test_fetch_delivery_checks_the_ticket_without_cache_dir_or_account(realm, site_dir):
    """delivery = "fetch" (containers): users have no account on the hub, which writes no
    cache files; the keytab (the hub's own, root here) and a real ticket are still checked."""
    user = f"kbdoc-pod-{secrets.token_hex(3)}"  # no local account
    config, _ = kerberos_site(realm, site_dir, user, delivery="fetch")
    code, lines, output = run_doctor(config, krb5_env(realm), "--user", user)
    assert code == 0, output
    assert statuses(lines) == {
        "config": "ok",
        "startup": "ok",
        "krb5.conf": "ok",
        "kdc": "ok",
        "ccache_dir": "skip",
        "account": "skip",
        "keytab": "ok",
        "ticket": "ok",
        "hadoop": "skip",  # no --hadoop-conf-dir: tests/test_doctor_hadoop.py
        "jvm": "skip",
    }, output
    assert 'delivery = "fetch"' in lines["account"][1]
    assert f"got a ticket for {user}@{realm.realm}" in lines["ticket"][1]


def test_without_user_the_user_checks_are_skipped_not_failed(realm, site_dir, local_user):
    config, _ = kerberos_site(realm, site_dir, local_user)
    code, lines, output = run_doctor(config, krb5_env(realm))
    assert code == 0, output
    assert {lines[n][0] for n in ("account", "keytab", "ticket")} == {"skip"}
    assert "give --user NAME" in lines["keytab"][1]


def test_keytab_readable_by_others_is_the_failing_line(realm, site_dir, local_user):
    config, keytab = kerberos_site(realm, site_dir, local_user)
    os.chmod(keytab, 0o644)
    code, lines, output = run_doctor(config, krb5_env(realm), "--user", local_user)
    assert code == 1, output
    assert lines["keytab"][1] == (
        f"problem keytab      keytab {keytab}: is accessible by group or others (mode 0644);"
        f" it must be mode 0600 or 0400  hint: chmod 600 {keytab}"
    )
    assert lines["ticket"][0] == "skip"
    failing = [name for name, status in statuses(lines).items() if status == "problem"]
    assert failing == ["keytab"], output


def test_keytab_of_another_principal(realm, site_dir, local_user):
    config, _ = kerberos_site(realm, site_dir, local_user)
    other = os.path.join(site_dir, "other.keytab")
    add_principal(realm, f"other-{local_user}", other)
    config = write_config(config, keytab_template=other, ccache_dir=os.path.join(site_dir, "cc"))
    code, lines, output = run_doctor(config, krb5_env(realm), "--user", local_user)
    assert code == 1, output
    assert lines["keytab"][0] == "problem"
    assert (
        f"holds no key of {local_user}@{realm.realm} (it has: other-{local_user}@{realm.realm})"
        in lines["keytab"][1]
    )


def test_kdc_stopped_is_the_failing_line(site_dir, local_user):
    k5 = start_realm()
    try:
        config, _ = kerberos_site(k5, site_dir, local_user)
        k5.stop_kdc()
        code, lines, output = run_doctor(config, krb5_env(k5), "--user", local_user)
    finally:
        k5.stop()
    assert code == 1, output
    assert lines["kdc"][1] == (
        f"problem kdc         KDC of {k5.realm} not answering: 127.0.0.1:{k5.portbase}"
        " (tcp: connection refused; udp: connection refused)"
        "  hint: start the KDC (krb5kdc), open the firewall to it, or fix kdc = in krb5.conf"
    )
    assert lines["ticket"][0] == "problem"
    assert "kdc_unreachable" in lines["ticket"][1]
    assert {lines[n][0] for n in ("config", "krb5.conf", "ccache_dir", "keytab")} == {"ok"}


@pytest.mark.parametrize("backend", ["krb5", "kinit"])
def test_one_kdc_down_of_two_is_named(realm, site_dir, local_user, dead_server, backend):
    """The library moves on to the next KDC; the doctor says which one did not answer."""
    _, dead_port = dead_server
    kdc = f"127.0.0.1:{realm.portbase}"
    with open(realm.env["KRB5_CONFIG"]) as f:
        text = f.read().replace(f"kdc = {kdc}", f"kdc = 127.0.0.1:{dead_port}\n\t\tkdc = {kdc}")
    env = krb5_env(realm)
    env["KRB5_CONFIG"] = os.path.join(site_dir, "krb5.conf")
    with open(env["KRB5_CONFIG"], "w") as f:
        f.write(text)
    os.chmod(env["KRB5_CONFIG"], 0o644)
    config, _ = kerberos_site(realm, site_dir, local_user, backend=backend)
    code, lines, output = run_doctor(config, env, "--user", local_user)
    assert code == 1, output
    assert lines["kdc"][1] == (
        f"problem kdc         KDC of {realm.realm} not answering: 127.0.0.1:{dead_port}"
        f" (tcp: connection refused); {kdc}/tcp answers"
        "  hint: start the KDC (krb5kdc), open the firewall to it, or fix kdc = in krb5.conf"
    )
    assert lines["ticket"][0] == "ok", output


def test_a_kinit_path_that_cannot_be_run(realm, site_dir, local_user):
    kinit = os.path.join(site_dir, "no-kinit")
    config, _ = kerberos_site(realm, site_dir, local_user, backend="kinit", kinit_path=kinit)
    code, lines, output = run_doctor(config, krb5_env(realm))
    assert code == 1, output
    assert lines["kdc"][1] == (
        "problem kdc         the kinit backend cannot be run: [Errno 2] No such file or"
        f" directory: {kinit!r}  hint: fix KerberosTickets.kinit_path"
    )


def test_password_tickets_ask_the_kdc_about_the_user(realm, site_dir, local_user):
    """No keytab to try: the kdc line says whether the KDC knows the user's principal."""
    config, _ = kerberos_site(
        realm,
        site_dir,
        local_user,
        keytab_template="",
        password_tickets=True,
        Authenticator__enable_auth_state=True,
    )
    code, lines, output = run_doctor(config, krb5_env(realm), "--user", local_user)
    assert code == 0, output
    assert lines["kdc"][1] == (
        f"ok      kdc         KDC of {realm.realm} answers at 127.0.0.1:{realm.portbase}/tcp"
        f" and knows {local_user}@{realm.realm}"
    )
    stranger = f"kbdoc-nokrb-{secrets.token_hex(3)}"
    code, lines, output = run_doctor(config, krb5_env(realm), "--user", stranger)
    assert code == 1, output
    assert lines["kdc"][1] == (
        f"problem kdc         KDC of {realm.realm} answers at 127.0.0.1:{realm.portbase}/tcp,"
        f" but knows no {stranger}@{realm.realm}  hint: create it (kadmin: addprinc"
        f" {stranger}@{realm.realm}), or fix KerberosTickets.principal_template"
    )


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (0o777, "is writable by group or others (mode 0777)"),
        (0o700, "has mode 0700: the users' servers cannot reach their caches in it"),
    ],
)
def test_unsafe_or_unreachable_ccache_dir(realm, site_dir, local_user, mode, expected):
    config, _ = kerberos_site(realm, site_dir, local_user)
    os.chmod(os.path.join(site_dir, "cc"), mode)
    code, lines, output = run_doctor(config, krb5_env(realm))
    assert code == 1, output
    assert lines["ccache_dir"][0] == "problem"
    assert expected in lines["ccache_dir"][1]


def test_missing_ccache_dir_is_fine_and_not_created(realm, site_dir, local_user):
    config, _ = kerberos_site(realm, site_dir, local_user)
    missing = os.path.join(site_dir, "not-yet")
    write_config(
        config, keytab_template=os.path.join(site_dir, "{username}.keytab"), ccache_dir=missing
    )
    code, lines, output = run_doctor(config, krb5_env(realm), "--user", local_user)
    assert code == 0, output
    assert "does not exist yet; the hub creates it" in lines["ccache_dir"][1]
    assert not os.path.exists(missing)


def test_options_the_hub_would_refuse(realm, site_dir, local_user):
    config, _ = kerberos_site(realm, site_dir, local_user)
    write_config(
        config,
        keytab_template="",
        ccache_dir=os.path.join(site_dir, "cc"),
        password_tickets=True,
    )
    code, lines, output = run_doctor(config, krb5_env(realm))
    assert code == 1, output
    assert lines["startup"][0] == "problem"
    assert (
        "KerberosTickets.password_tickets requires Authenticator.enable_auth_state"
        in (lines["startup"][1])
    )


@pytest.mark.parametrize(
    ("authenticator", "expected"),
    [
        ("dummy", "not a kerbauth authenticator"),
        ("no-such-thing", "is no installed authenticator"),
        ("kerbauth.nothere.Missing", "cannot be imported"),
    ],
)
def test_a_config_without_a_kerbauth_authenticator(site_dir, authenticator, expected):
    config = write_config(os.path.join(site_dir, "c.py"), authenticator=authenticator)
    code, lines, output = run_doctor(config, dict(os.environ))
    assert code == 1, output
    assert list(lines) == ["config"]
    assert lines["config"][0] == "problem" and expected in lines["config"][1]


def test_unknown_realm_in_krb5_conf(realm, site_dir, local_user):
    config, _ = kerberos_site(realm, site_dir, local_user, realm="ELSEWHERE.TEST")
    env = krb5_env(realm)
    code, lines, output = run_doctor(config, env)
    assert code == 1, output
    assert lines["krb5.conf"][0] == "problem"
    assert "no [realms] entry for ELSEWHERE.TEST and dns_lookup_kdc is off" in lines["krb5.conf"][1]


def krb5_conf_without_realm(k5, site_dir, *lines):
    """The realm's krb5.conf without its default_realm, ``lines`` first (world-readable)."""
    with open(k5.env["KRB5_CONFIG"]) as f:
        kept = [line for line in f.read().splitlines() if "default_realm" not in line]
    path = os.path.join(site_dir, "krb5.conf")
    with open(path, "w") as f:
        f.write("\n".join([*lines, *kept]) + "\n")
    os.chmod(path, 0o644)
    return path


@pytest.mark.parametrize("backend", ["krb5", "kinit"])
def test_a_realm_named_in_an_includedir_file_is_used(realm, site_dir, local_user, backend):
    """Debian and RHEL: default_realm in /etc/krb5.conf.d/; the hub starts, tickets work."""
    confd = os.path.join(site_dir, "krb5.conf.d")
    os.mkdir(confd, 0o755)
    with open(os.path.join(confd, "realm.conf"), "w") as f:
        f.write(f"[libdefaults]\n  default_realm = {realm.realm}\n")
    os.chmod(os.path.join(confd, "realm.conf"), 0o644)
    env = krb5_env(realm)
    env["KRB5_CONFIG"] = krb5_conf_without_realm(realm, site_dir, f"includedir {confd}")
    config, _ = kerberos_site(realm, site_dir, local_user, backend=backend)
    code, lines, output = run_doctor(config, env, "--user", local_user)
    assert code == 0, output
    assert lines["startup"][0] == "ok"
    assert f"realm {realm.realm}" in lines["krb5.conf"][1]
    assert f"got a ticket for {local_user}@{realm.realm}" in lines["ticket"][1]


def test_no_realm_anywhere_is_the_failing_line(realm, site_dir, local_user):
    env = krb5_env(realm)
    env["KRB5_CONFIG"] = krb5_conf_without_realm(realm, site_dir)
    config, _ = kerberos_site(realm, site_dir, local_user)
    code, lines, output = run_doctor(config, env)
    assert code == 1, output
    assert lines["krb5.conf"][1] == (
        f"problem krb5.conf   {env['KRB5_CONFIG']} names no default_realm and"
        " KerberosTickets.realm is not set"
        "  hint: set default_realm in [libdefaults] or c.KerberosTickets.realm"
    )
    assert lines["startup"][1] == (
        "problem startup     the hub would refuse to start: KerberosTickets.realm is not set"
        " and krb5.conf names no default_realm  hint: fix the option the message names"
    )
    assert lines["kdc"][0] == "skip"


# --- the plain helpers ---------------------------------------------------------------------


def test_keytab_entries_lists_every_principal_and_kvno(realm, site_dir):
    keytab = os.path.join(site_dir, "two.keytab")
    first = add_principal(realm, f"kt1-{secrets.token_hex(3)}", keytab)
    second = add_principal(realm, f"kt2-{secrets.token_hex(3)}")
    realm.extract_keytab(second, keytab)
    realm.run_kadminl(f"ktadd -k {keytab} {second}")  # a new random key: kvno 2
    with open(keytab, "rb") as f:
        entries = doctor.keytab_entries(f.read())
    found = {(name, kvno) for name, kvno, _ in entries}
    assert (first, 1) in found and (second, 1) in found and (second, 2) in found
    assert {name for name, _ in found} == {first, second}
    with pytest.raises(ValueError, match="not a version 2 keytab"):
        doctor.keytab_entries(b"\x05\x01rest")


def test_krb5_conf_reader_follows_includes(site_dir):
    extra = os.path.join(site_dir, "conf.d")
    os.mkdir(extra)
    with open(os.path.join(extra, "corp.conf"), "w") as f:
        f.write(
            "[realms]\n CORP.EXAMPLE = {\n  kdc = tcp/kdc1.corp.example:750\n"
            "  kdc = [2001:db8::1]\n  auth_to_local = {\n   x = y\n  }\n }\n"
        )
    with open(os.path.join(extra, "ignored~"), "w") as f:
        f.write("[realms]\n IGNORED = {\n  kdc = x\n }\n")
    main = os.path.join(site_dir, "krb5.conf")
    with open(main, "w") as f:
        f.write(
            f"includedir {extra}\n[libdefaults]\n  default_realm = CORP.EXAMPLE\n"
            "# a comment\n  dns_lookup_kdc = false\n"
        )
    conf = doctor.read_krb5_conf([main, os.path.join(site_dir, "absent.conf")])
    assert conf.files == [main, os.path.join(extra, "corp.conf")]
    assert conf.libdefaults == {"default_realm": "CORP.EXAMPLE", "dns_lookup_kdc": "false"}
    assert conf.realms == {"CORP.EXAMPLE": {"kdc": ["tcp/kdc1.corp.example:750", "[2001:db8::1]"]}}


# --- LDAP: healthy and broken ----------------------------------------------------------------


@pytest.fixture
def ldap_person(slapd, local_user):
    """``local_user`` also has an entry in the test directory (removed afterwards)."""
    dn = f"uid={local_user},{slapd.people_dn}"
    conn = slapd.admin_connection()
    try:
        conn.add(
            dn,
            ["inetOrgPerson"],
            {"uid": local_user, "cn": local_user, "sn": "Doctor"},
        )
        assert conn.result["result"] == 0, conn.result
        yield dn
    finally:
        conn.delete(dn)
        conn.unbind()


def ldap_site(realm, slapd, site_dir, user, **ldap_options):
    options = {
        "KerberosLDAPAuthenticator__server_address": [f"127.0.0.1:{slapd.ldap_port}"],
        "KerberosLDAPAuthenticator__tls_strategy": "starttls",
        "KerberosLDAPAuthenticator__tls_ca_file": slapd.ca_file,
        "KerberosLDAPAuthenticator__bind_dn_template": [f"uid={{username}},{slapd.people_dn}"],
        "KerberosLDAPAuthenticator__search_bind_dn": slapd.service_dn,
        "KerberosLDAPAuthenticator__search_bind_password": slapd.service_password,
    }
    options.update({f"KerberosLDAPAuthenticator__{k}": v for k, v in ldap_options.items()})
    config, _ = kerberos_site(realm, site_dir, user, authenticator="kerberos-ldap", **options)
    return config


LDAP_CHECKS = ("ldap", "ldap-tls", "ldap-bind", "ldap-lookup")


def test_a_healthy_ldap_site_passes_every_check(realm, slapd, site_dir, local_user, ldap_person):
    config = ldap_site(realm, slapd, site_dir, local_user)
    code, lines, output = run_doctor(config, krb5_env(realm), "--user", local_user)
    assert code == 0, output
    not_ok = {name: status for name, status in statuses(lines).items() if status != "ok"}
    assert not_ok == {"hadoop": "skip", "jvm": "skip"}, output  # no --hadoop-conf-dir
    assert list(lines)[-4:] == list(LDAP_CHECKS)
    server = f"127.0.0.1:{slapd.ldap_port}"
    assert (
        f"TLS (starttls) verified with {server}, trusting {slapd.ca_file}" in lines["ldap-tls"][1]
    )
    assert f"bound as {slapd.service_dn} on {server}" in lines["ldap-bind"][1]
    assert lines["ldap-lookup"][1].endswith(f"{local_user} is {ldap_person}")
    assert slapd.service_password not in output


def test_ldap_server_signed_by_an_unknown_ca(realm, slapd, site_dir, local_user, ldap_person):
    config = ldap_site(realm, slapd, site_dir, local_user, tls_ca_file=slapd.other_ca_file)
    code, lines, output = run_doctor(config, krb5_env(realm), "--user", local_user)
    assert code == 1, output
    status, line = lines["ldap-tls"]
    assert status == "problem"
    assert line.startswith(f"problem ldap-tls    TLS (starttls) with 127.0.0.1:{slapd.ldap_port} (")
    assert "certificate" in line.split(f"{slapd.ldap_port} (", 1)[1]
    assert f"trusting {slapd.other_ca_file}" in line
    assert "hint: set KerberosLDAPAuthenticator.tls_ca_file" in line
    failing = [name for name, status in statuses(lines).items() if status == "problem"]
    assert failing == ["ldap-tls"], output
    assert lines["ldap-bind"][0] == lines["ldap-lookup"][0] == "skip"


def test_ldap_service_bind_refused(realm, slapd, site_dir, local_user):
    config = ldap_site(realm, slapd, site_dir, local_user, search_bind_password="wrong-secret")
    code, lines, output = run_doctor(config, krb5_env(realm))
    assert code == 1, output
    status, line = lines["ldap-bind"]
    assert status == "problem"
    assert line.startswith(f"problem ldap-bind   127.0.0.1:{slapd.ldap_port}: ")
    assert f"refused the search account {slapd.service_dn!r}" in line
    assert line.endswith(
        "  hint: check KerberosLDAPAuthenticator.search_bind_dn and search_bind_password"
    )
    assert "wrong-secret" not in output


def test_ldap_service_bind_with_kerberos(realm, sasl_slapd, sasl_keytabs, site_dir, local_user):
    """search_bind_mechanism = "gssapi": the doctor binds as the principal (no password)."""
    _, keytab, principal = sasl_keytabs
    gssapi = {"search_bind_dn": "", "search_bind_password": "", "search_bind_keytab": keytab}
    gssapi.update(search_bind_mechanism="gssapi", search_bind_principal=principal)
    config = ldap_site(realm, sasl_slapd, site_dir, local_user, **gssapi)
    mark = sasl_slapd.log_mark()
    code, lines, output = run_doctor(config, krb5_env(realm))
    assert code == 0, output
    assert f"bound as {principal} on 127.0.0.1:{sasl_slapd.ldap_port}" in lines["ldap-bind"][1]
    assert f'BIND dn="{sasl_slapd.service_dn}" mech=GSSAPI' in sasl_slapd.log_since(mark)


def test_ldap_server_down_and_unknown_user(realm, slapd, site_dir, local_user, dead_server):
    host, port = dead_server
    config = ldap_site(
        realm,
        slapd,
        site_dir,
        local_user,
        server_address=[f"{host}:{port}", f"127.0.0.1:{slapd.ldap_port}"],
    )
    code, lines, output = run_doctor(config, krb5_env(realm), "--user", local_user)
    assert code == 1, output
    assert lines["ldap"][1].startswith(
        f"problem ldap        LDAP server not reachable: {host}:{port} (connection refused)"
    )
    # The next server is still checked: TLS and bind work, the user has no entry.
    assert lines["ldap-tls"][0] == lines["ldap-bind"][0] == "ok"
    assert lines["ldap-lookup"][0] == "problem"
    assert f"no LDAP entry for {local_user!r}" in lines["ldap-lookup"][1]


def test_pam_mode_prints_no_ldap_lines(realm, site_dir, local_user):
    config, _ = kerberos_site(realm, site_dir, local_user)
    _, lines, _ = run_doctor(config, krb5_env(realm))
    assert not set(LDAP_CHECKS) & set(lines)
