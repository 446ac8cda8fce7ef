"""A real slapd holding the planetexpress.com directory, as ldapauthenticator's own tests use it.

``planetexpress`` (session-scoped) starts Debian's slapd on free loopback ports
(plain LDAP with StartTLS offered, and LDAPS, a certificate from a test CA made
for this run) and loads the LDIF files of ``testdata("planetexpress")`` as they
are: the people (fry, leela, bender, hermes, professor, amy, zoidberg, each
with the password of their uid) and the groups admin_staff and ship_crew, of
the image's own structural class ``Group``, whose schema is read from the data's
``config/msad.ldif`` and written in slapd.conf syntax. Anonymous clients may
search (as in the image ldapauthenticator's tests run against); passwords can
only be bound with. The server is stopped and its directory removed in
``finally``. The data files are read from the test data folder, never copied
into the repository.
"""

import contextlib
import glob
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from .ports import free_port
from .processes import stop
from .slapd import (
    Slapd,
    _password,
    _wait_ready,
    _write_pem,
    make_ca,
    make_server_cert,
    ssha,
    write_cert,
    write_key,
)
from .testdata import testdata

BASE_DN = "dc=planetexpress,dc=com"
PEOPLE_DN = f"ou=people,{BASE_DN}"
ADMIN_DN = f"cn=admin,{BASE_DN}"
SCHEMAS = ("core", "cosine", "nis", "inetorgperson")

# The users of the data, each with the password of their uid, and their groups' DNs.
USERS = ("fry", "leela", "bender", "hermes", "professor", "amy", "zoidberg")
SHIP_CREW = f"cn=ship_crew,{PEOPLE_DN}"
ADMIN_STAFF = f"cn=admin_staff,{PEOPLE_DN}"


def schema_from_ldif(path):
    """The attribute types and object classes an ``olc*`` LDIF adds, in slapd.conf syntax."""
    with open(path, encoding="utf-8") as f:
        text = re.sub(r"\n[ \t]", " ", f.read())  # unfold continuation lines
    lines = []
    kinds = (("olcAttributetypes", "attributetype"), ("olcObjectClasses", "objectclass"))
    for key, keyword in kinds:
        for value in re.findall(rf"^{key}:\s*(.*)$", text, flags=re.MULTILINE | re.IGNORECASE):
            lines.append(f"{keyword} {' '.join(value.split())}")
    return lines


def _seed_ldif(folder):
    """The base entry, then the data's LDIF files in their order."""
    parts = [
        f"dn: {BASE_DN}\nobjectClass: top\nobjectClass: dcObject\nobjectClass: organization\n"
        "o: Planet Express\ndc: planetexpress\n"
    ]
    for path in sorted(glob.glob(os.path.join(folder, "*.ldif"))):
        with open(path, encoding="utf-8") as f:
            parts.append(f.read().strip() + "\n")
    return "\n".join(parts)


def _slapd_conf(directory, admin_password, schema_file):
    lines = [f"include /etc/ldap/schema/{name}.schema" for name in SCHEMAS]
    lines += [
        f"include {schema_file}",
        f"pidfile {directory}/slapd.pid",
        f"argsfile {directory}/slapd.args",
        "modulepath /usr/lib/ldap",
        "moduleload back_mdb",
        f"TLSCACertificateFile {directory}/ca.pem",
        f"TLSCertificateFile {directory}/server.pem",
        f"TLSCertificateKeyFile {directory}/server.key",
        "database mdb",
        "maxsize 16777216",
        f'suffix "{BASE_DN}"',
        f'rootdn "{ADMIN_DN}"',
        f"rootpw {ssha(admin_password)}",
        f"directory {directory}/db",
        "index objectClass eq",
        "index uid,member eq",
        "access to attrs=userPassword by anonymous auth by * none",
        "access to * by * read",
    ]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def running_planetexpress():
    """Start slapd with the planetexpress data; yield a :class:`~support.slapd.Slapd`."""
    folder = testdata("planetexpress")
    directory = tempfile.mkdtemp(prefix="kerbauth-planetexpress-")
    process = None
    try:
        os.mkdir(os.path.join(directory, "db"), 0o700)
        ca_key, ca_cert = make_ca("kerbauth planetexpress CA")
        key, cert = make_server_cert(ca_key, ca_cert)
        write_cert(os.path.join(directory, "ca.pem"), ca_cert)
        write_cert(os.path.join(directory, "server.pem"), cert)
        write_key(os.path.join(directory, "server.key"), key)
        write_cert(os.path.join(directory, "other-ca.pem"), make_ca("some other CA")[1])
        schema_file = os.path.join(directory, "msad.schema")
        schema = schema_from_ldif(os.path.join(folder, "config", "msad.ldif"))
        _write_pem(schema_file, ("\n".join(schema) + "\n").encode())
        admin_password = _password()
        conf = os.path.join(directory, "slapd.conf")
        _write_pem(conf, _slapd_conf(directory, admin_password, schema_file).encode(), mode=0o600)
        subprocess.run(
            ["slapadd", "-q", "-f", conf],
            input=_seed_ldif(folder).encode("utf-8"),
            capture_output=True,
            check=True,
        )
        ldap_port, ldaps_port = free_port(), free_port()
        urls = f"ldap://127.0.0.1:{ldap_port}/ ldaps://127.0.0.1:{ldaps_port}/"
        with open(os.path.join(directory, "slapd.log"), "wb") as log:
            process = subprocess.Popen(
                ["slapd", "-d", "0", "-f", conf, "-h", urls],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = Slapd(
            directory=directory,
            process=process,
            ldap_port=ldap_port,
            ldaps_port=ldaps_port,
            ca_file=os.path.join(directory, "ca.pem"),
            other_ca_file=os.path.join(directory, "other-ca.pem"),
            admin_password=admin_password,
            service_password="",
            people={},
            groups={},
            base_dn=BASE_DN,
            admin_dn=ADMIN_DN,
            service_dn="",
            people_dn=PEOPLE_DN,
            staff_dn="",
            groups_dn=PEOPLE_DN,
        )
        _wait_ready(server, time.monotonic() + 15)
        yield server
    finally:
        if process is not None:
            stop(process)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def planetexpress():
    with running_planetexpress() as server:
        yield server
