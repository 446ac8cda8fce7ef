"""The default realm and krb5.conf, read by libkrb5 or by the one fallback reader.

Each case runs twice: through libkrb5 (the krb5 bindings, reading
``$KRB5_CONFIG`` of this process) and through the fallback reader, called
directly with the environment to read.
"""

import pytest
from traitlets.config import Config

from kerbauth.core import realm as krb5_realm
from kerbauth.core.errors import ConfigError
from kerbauth.hub.tickets import KerberosTickets

both_readers = pytest.mark.parametrize("reader", ["libkrb5", "fallback"])


def default_realm(reader, paths, monkeypatch):
    value = ":".join(paths)
    if reader == "fallback":
        return krb5_realm.default_realm({"KRB5_CONFIG": value})
    monkeypatch.setenv("KRB5_CONFIG", value)
    return krb5_realm.default_realm()


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


MAIN = "[libdefaults]\n  dns_lookup_realm = false\n  dns_lookup_kdc = false\n"


@both_readers
def test_a_realm_in_an_included_file(tmp_path, monkeypatch, reader):
    included = write(tmp_path / "site.conf", "[libdefaults]\n  default_realm = INCLUDED.TEST\n")
    main = write(tmp_path / "krb5.conf", f"include {included}\n{MAIN}")
    assert default_realm(reader, [str(main)], monkeypatch) == "INCLUDED.TEST"


@both_readers
def test_a_realm_in_an_includedir_file(tmp_path, monkeypatch, reader):
    """Debian and RHEL: /etc/krb5.conf includes /etc/krb5.conf.d/, which names the realm."""
    confd = tmp_path / "krb5.conf.d"
    confd.mkdir()
    write(confd / "realm.conf", "[libdefaults]\n  default_realm = CONFD.TEST\n")
    # Names MIT does not read from an includedir (a backup, a dotted name) are left out.
    write(confd / "realm.conf~", "[libdefaults]\n  default_realm = BACKUP.TEST\n")
    write(confd / "a.b", "[libdefaults]\n  default_realm = DOTTED.TEST\n")
    main = write(tmp_path / "krb5.conf", f"includedir {confd}\n{MAIN}")
    assert default_realm(reader, [str(main)], monkeypatch) == "CONFD.TEST"


@both_readers
def test_several_files_in_krb5_config_the_first_naming_a_realm_wins(tmp_path, monkeypatch, reader):
    first = write(tmp_path / "first.conf", MAIN)
    second = write(tmp_path / "second.conf", "[libdefaults]\n  default_realm = SECOND.TEST\n")
    third = write(tmp_path / "third.conf", "[libdefaults]\n  default_realm = THIRD.TEST\n")
    missing = str(tmp_path / "missing.conf")
    paths = [missing, str(first), str(second), str(third)]
    assert default_realm(reader, paths, monkeypatch) == "SECOND.TEST"


@both_readers
def test_no_realm_anywhere(tmp_path, monkeypatch, reader):
    confd = tmp_path / "krb5.conf.d"
    confd.mkdir()
    write(confd / "kdcs.conf", "[realms]\n  X.TEST = {\n    kdc = kdc.x.test\n  }\n")
    main = write(tmp_path / "krb5.conf", f"includedir {confd}\n{MAIN}")
    # A default_realm outside [libdefaults] is not one.
    other = write(tmp_path / "other.conf", "[appdefaults]\n  default_realm = NOT.THIS\n")
    assert default_realm(reader, [str(main), str(other)], monkeypatch) is None


def test_the_reader_keeps_what_the_doctor_shows(tmp_path):
    """The same reader gives the doctor the files, [libdefaults] and the realms' KDCs."""
    confd = tmp_path / "d"
    confd.mkdir()
    realms = write(
        confd / "realms.conf",
        "[realms]\n  A.TEST = {\n    kdc = kdc1.a.test\n    kdc = kdc2.a.test:750\n"
        "    auth_to_local = {\n      RULE:x\n    }\n  }\n",
    )
    main = write(tmp_path / "krb5.conf", f"{MAIN}includedir {confd}\n")
    conf = krb5_realm.read_krb5_conf([str(main)])
    assert conf.files == [str(main), str(realms)]
    assert conf.libdefaults == {"dns_lookup_realm": "false", "dns_lookup_kdc": "false"}
    assert conf.realms == {"A.TEST": {"kdc": ["kdc1.a.test", "kdc2.a.test:750"]}}


def test_krb5_config_names_the_files(monkeypatch):
    monkeypatch.setenv("KRB5_CONFIG", "/a.conf:/b.conf")
    assert krb5_realm.krb5_conf_paths() == ["/a.conf", "/b.conf"]
    monkeypatch.delenv("KRB5_CONFIG")
    assert krb5_realm.krb5_conf_paths() == ["/etc/krb5.conf"]


# --- the hub: its realm default and its refusal -----------------------------------------


def hub_options(tmp_path):
    return Config({"KerberosTickets": {"keytab_template": str(tmp_path / "{username}.keytab")}})


def test_the_hub_takes_its_realm_from_an_includedir_file(tmp_path, monkeypatch):
    """Debian and RHEL: a host whose default_realm is in /etc/krb5.conf.d/ starts."""
    confd = tmp_path / "krb5.conf.d"
    confd.mkdir()
    write(confd / "realm", "[libdefaults]\n  default_realm = CONFD.TEST\n")
    main = write(tmp_path / "krb5.conf", f"includedir {confd}\n{MAIN}")
    monkeypatch.setenv("KRB5_CONFIG", str(main))
    tickets = KerberosTickets(config=hub_options(tmp_path))
    tickets.check_config()
    assert tickets.realm == "CONFD.TEST"


def test_the_hub_refuses_to_start_without_a_realm(tmp_path, monkeypatch):
    monkeypatch.setenv("KRB5_CONFIG", str(write(tmp_path / "krb5.conf", MAIN)))
    tickets = KerberosTickets(config=hub_options(tmp_path))
    with pytest.raises(ConfigError) as refused:
        tickets.check_config()
    assert str(refused.value) == (
        "KerberosTickets.realm is not set and krb5.conf names no default_realm"
    )
