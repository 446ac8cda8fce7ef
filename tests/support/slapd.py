"""A real, throwaway OpenLDAP server for the LDAP tests, and servers that misbehave.

``slapd`` (session-scoped) starts Debian's slapd from a ``slapd.conf`` written
into a fresh temporary directory: mdb backend, the directory below seeded
with slapadd, listening on 127.0.0.1 only, plain LDAP (StartTLS offered) and
LDAPS on free ports, with a server certificate from a test CA made for this
run. It also listens for LDAPS on 127.0.0.2, an address the certificate does
not name, so the hostname check can be tested. The process is killed and the
directory removed in ``finally``; the system's own slapd configuration is
never read or touched.

``dead_server`` is a port nobody listens on; ``blackhole_server`` accepts TCP
connections and never answers.

Passwords reach slapd only as salted hashes inside files of the private
directory: never in argv or the environment.
"""

import base64
import contextlib
import datetime
import hashlib
import ipaddress
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field

import ldap3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .ports import free_port
from .processes import stop
from .realm import add_principal

BASE_DN = "dc=kerbauth,dc=test"
PEOPLE = f"ou=people,{BASE_DN}"
STAFF = f"ou=staff,{BASE_DN}"
GROUPS = f"ou=groups,{BASE_DN}"
ADMIN_DN = f"cn=admin,{BASE_DN}"
SERVICE_DN = f"cn=jupyterhub,ou=services,{BASE_DN}"
SCHEMAS = ("core", "cosine", "nis", "inetorgperson")


@dataclass
class Person:
    """A seeded user: ``uid`` is the login name; ``ou`` is the entry's parent."""

    uid: str
    password: str
    uid_number: int
    gid_number: int
    ou: str = PEOPLE
    mail: str = ""

    @property
    def dn(self):
        return f"uid={self.uid},{self.ou}"


@dataclass
class Group:
    """A seeded group: ``kind`` is groupOfNames, groupOfUniqueNames or posixGroup."""

    cn: str
    kind: str
    members: list = field(default_factory=list)  # Person objects
    gid_number: int = 0

    @property
    def dn(self):
        return f"cn={self.cn},{GROUPS}"


def _password():
    return "pw-" + secrets.token_urlsafe(12)


def default_people(first_uid=46000, bench_users=0):
    """The users every run seeds (plus ``bench_users`` ``bench-N`` users for the benchmark)."""
    people = {
        "alice": Person("alice", _password(), first_uid, first_uid, mail="alice@corp.example"),
        "bob": Person("bob", _password(), first_uid + 1, first_uid + 1, mail="bob@corp.example"),
        "carol": Person("carol", _password(), first_uid + 2, first_uid + 2),
        # Under another OU: reachable by the second bind_dn_template, or by search.
        "dave": Person("dave", _password(), first_uid + 3, first_uid + 3, ou=STAFF),
        # For the spawn test: the uidNumber of a local account made for it.
        "lena": Person("lena", _password(), first_uid + 4, first_uid + 4),
        # A password with spaces and non-ASCII, kept exactly as typed.
        "erik": Person("erik", " Grüße aus Köln ", first_uid + 5, first_uid + 5),
    }
    for n in range(bench_users):
        name = f"bench-{n}"
        people[name] = Person(name, _password(), first_uid + 100 + n, first_uid + 100 + n)
    return people


def default_groups(people):
    p = people
    return {
        "hub-users": Group("hub-users", "groupOfNames", [p["alice"], p["bob"], p["lena"]]),
        "hub-admins": Group("hub-admins", "groupOfUniqueNames", [p["alice"]]),
        "data-science": Group("data-science", "posixGroup", [p["bob"], p["dave"]], 47000),
        "staff": Group("staff", "groupOfNames", [p["dave"]]),
    }


# --- certificates ---------------------------------------------------------------------


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn):
    """A self-signed CA: ``(key, certificate)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_server_cert(ca_key, ca_cert, names=("localhost",), ips=("127.0.0.1",)):
    """A server certificate signed by the CA for ``names`` and ``ips``: ``(key, cert)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    alt = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def make_client_cert(ca_key, ca_cert, cn="jupyterhub"):
    """A TLS client certificate for ``cn`` signed by the CA: ``(key, cert)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _write_pem(path, data, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_cert(path, cert):
    _write_pem(path, cert.public_bytes(serialization.Encoding.PEM))


def write_key(path, key):
    _write_pem(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        mode=0o600,
    )


# --- the directory's contents ---------------------------------------------------------


def ssha(password):
    """An RFC 2307 ``{SSHA}`` hash of ``password``: what slapd stores and checks."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode("utf-8") + salt, usedforsecurity=False).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode("ascii")


def _ldif_value(name, value):
    """One LDIF line; base64 for values LDIF cannot carry as they are."""
    raw = value.encode("utf-8")
    if value != value.strip() or not value.isascii() or value[:1] in (":", "<"):
        return f"{name}:: {base64.b64encode(raw).decode('ascii')}"
    return f"{name}: {value}"


def seed_ldif(people, groups, service_password):
    """The LDIF of the whole test directory."""
    entries = [
        [
            f"dn: {BASE_DN}",
            "objectClass: dcObject",
            "objectClass: organization",
            "o: kerbauth tests",
            "dc: kerbauth",
        ],
    ]
    for ou in ("people", "staff", "groups", "services"):
        entries.append([f"dn: ou={ou},{BASE_DN}", "objectClass: organizationalUnit", f"ou: {ou}"])
    entries.append(
        [
            f"dn: {SERVICE_DN}",
            "objectClass: applicationProcess",
            "objectClass: simpleSecurityObject",
            "cn: jupyterhub",
            _ldif_value("userPassword", ssha(service_password)),
        ]
    )
    for p in people.values():
        lines = [
            f"dn: {p.dn}",
            "objectClass: inetOrgPerson",
            "objectClass: posixAccount",
            f"uid: {p.uid}",
            f"cn: {p.uid.title()} Test",
            "sn: Test",
            f"uidNumber: {p.uid_number}",
            f"gidNumber: {p.gid_number}",
            f"homeDirectory: /home/{p.uid}",
            _ldif_value("userPassword", ssha(p.password)),
        ]
        if p.mail:
            lines.append(f"mail: {p.mail}")
        entries.append(lines)
    for g in groups.values():
        lines = [f"dn: {g.dn}", f"objectClass: {g.kind}", f"cn: {g.cn}"]
        if g.kind == "groupOfNames":
            lines += [f"member: {m.dn}" for m in g.members]
        elif g.kind == "groupOfUniqueNames":
            lines += [f"uniqueMember: {m.dn}" for m in g.members]
        else:
            lines.append(f"gidNumber: {g.gid_number}")
            lines += [f"memberUid: {m.uid}" for m in g.members]
        entries.append(lines)
    return "\n\n".join("\n".join(lines) for lines in entries) + "\n"


def slapd_conf(directory, admin_password, extra=()):
    """The slapd.conf of the test server: mdb, TLS, access for binds and logged-in users.

    ``extra``: more global lines (TLS or SASL settings), before the database.
    """
    lines = [f"include /etc/ldap/schema/{name}.schema" for name in SCHEMAS]
    lines += [
        f"pidfile {directory}/slapd.pid",
        f"argsfile {directory}/slapd.args",
        "modulepath /usr/lib/ldap",
        "moduleload back_mdb",
        f"TLSCACertificateFile {directory}/ca.pem",
        f"TLSCertificateFile {directory}/server.pem",
        f"TLSCertificateKeyFile {directory}/server.key",
        *extra,
        "database mdb",
        "maxsize 16777216",
        f'suffix "{BASE_DN}"',
        f'rootdn "{ADMIN_DN}"',
        f"rootpw {ssha(admin_password)}",
        f"directory {directory}/db",
        "index objectClass eq",
        "index uid,memberUid,member,uniqueMember eq",
        # Passwords: checked at bind, readable by nobody. Everything else:
        # readable after a bind, nothing for anonymous (as most sites run it).
        "access to attrs=userPassword by anonymous auth by * none",
        "access to * by users read by * none",
    ]
    return "\n".join(lines) + "\n"


# --- the running server ---------------------------------------------------------------


@dataclass
class Slapd:
    """A running test slapd and what tests need to reach it."""

    directory: str
    process: subprocess.Popen
    ldap_port: int
    ldaps_port: int
    ca_file: str
    other_ca_file: str
    admin_password: str
    service_password: str
    people: dict
    groups: dict
    ca_key: object = None  # the test CA's private key: for client certificates
    ca_cert: object = None
    host: str = "127.0.0.1"
    base_dn: str = BASE_DN
    admin_dn: str = ADMIN_DN
    service_dn: str = SERVICE_DN
    people_dn: str = PEOPLE
    staff_dn: str = STAFF
    groups_dn: str = GROUPS

    @property
    def log_path(self):
        return os.path.join(self.directory, "slapd.log")

    def log_mark(self):
        """Where the log ends now; pass it to :meth:`log_since`."""
        return os.path.getsize(self.log_path)

    def log_since(self, mark, deadline=5):
        """The log since ``mark``, once every connection it shows opened is closed.

        slapd writes a result line after it has sent the result, so a client
        can be done before the line is there; a connection's "closed" line
        comes last. Polls for up to ``deadline`` seconds, then returns what
        there is.
        """
        end = time.monotonic() + deadline
        while True:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                f.seek(mark)
                text = f.read()
            opened = set(re.findall(r"conn=(\d+) fd=\d+ ACCEPT", text))
            closed = set(re.findall(r"conn=(\d+) fd=\d+ closed", text))
            if opened <= closed or time.monotonic() > end:
                return text
            time.sleep(0.02)

    def admin_connection(self):
        """A bound ldap3 connection as the directory's root DN (plain LDAP, for seeding)."""
        server = ldap3.Server(self.host, port=self.ldap_port, get_info=ldap3.NONE)
        return ldap3.Connection(
            server,
            user=self.admin_dn,
            password=self.admin_password,
            auto_bind=True,
            receive_timeout=5,
        )

    @contextlib.contextmanager
    def temporary_person(self, person):
        """Add ``person``'s entry for the duration of the block, then delete it.

        Raises ``RuntimeError`` with slapd's answer (e.g. entryAlreadyExists
        for a DN the directory already holds, compared without case).
        """
        attributes = {
            "objectClass": ["inetOrgPerson", "posixAccount"],
            "uid": person.uid,
            "cn": f"{person.uid} Test",
            "sn": "Test",
            "uidNumber": person.uid_number,
            "gidNumber": person.gid_number,
            "homeDirectory": f"/home/{person.uid}",
            "userPassword": ssha(person.password),
        }
        conn = self.admin_connection()
        try:
            if not conn.add(person.dn, attributes=attributes):
                raise RuntimeError(f"adding {person.dn} failed: {conn.result}")
            try:
                yield person
            finally:
                if not conn.delete(person.dn):
                    raise RuntimeError(f"deleting {person.dn} failed: {conn.result}")
        finally:
            conn.unbind()


def _wait_ready(slapd, deadline):
    """Poll until a bind as the root DN succeeds; raise with slapd's log if it never does."""
    last = None
    while time.monotonic() < deadline:
        if slapd.process.poll() is not None:
            break
        try:
            slapd.admin_connection().unbind()
            return
        except ldap3.core.exceptions.LDAPException as e:
            last = e
        time.sleep(0.05)
    with open(slapd.log_path, encoding="utf-8", errors="replace") as f:
        log = f.read()[-4000:]
    raise RuntimeError(
        f"slapd did not come up ({last}; exit status {slapd.process.poll()}):\n{log}"
    )


@contextlib.contextmanager
def running_slapd(people=None, groups=None, log_level="stats", extra_conf=(), env=None):
    """Start a throwaway slapd; yield a :class:`Slapd`; stop it and remove everything.

    ``log_level`` is slapd's ``-d`` level; ``"stats"`` logs every connection,
    bind and search filter (the tests read it), ``"0"`` nothing. ``extra_conf``:
    global slapd.conf lines (TLS, SASL); ``env``: variables added to slapd's
    environment (KRB5_CONFIG, KRB5_KTNAME for SASL/GSSAPI).
    """
    people = people if people is not None else default_people()
    groups = groups if groups is not None else default_groups(people)
    directory = tempfile.mkdtemp(prefix="kerbauth-slapd-")
    process = None
    try:
        os.mkdir(os.path.join(directory, "db"), 0o700)
        ca_key, ca_cert = make_ca("kerbauth test CA")
        key, cert = make_server_cert(ca_key, ca_cert)
        write_cert(os.path.join(directory, "ca.pem"), ca_cert)
        write_cert(os.path.join(directory, "server.pem"), cert)
        write_key(os.path.join(directory, "server.key"), key)
        # A CA that signed nothing here: what "an unknown CA" means in the tests.
        write_cert(os.path.join(directory, "other-ca.pem"), make_ca("some other CA")[1])
        admin_password, service_password = _password(), _password()
        conf = os.path.join(directory, "slapd.conf")
        _write_pem(conf, slapd_conf(directory, admin_password, extra_conf).encode(), mode=0o600)
        subprocess.run(
            ["slapadd", "-q", "-f", conf],
            input=seed_ldif(people, groups, service_password).encode("utf-8"),
            capture_output=True,
            check=True,
        )
        ldap_port, ldaps_port = free_port(), free_port()
        urls = (
            f"ldap://127.0.0.1:{ldap_port}/ ldaps://127.0.0.1:{ldaps_port}/"
            f" ldaps://127.0.0.2:{ldaps_port}/"
        )
        with open(os.path.join(directory, "slapd.log"), "wb") as log:
            # -d keeps slapd in the foreground, so this Popen is the server itself.
            process = subprocess.Popen(
                ["slapd", "-d", log_level, "-f", conf, "-h", urls],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        server = Slapd(
            directory=directory,
            process=process,
            ldap_port=ldap_port,
            ldaps_port=ldaps_port,
            ca_file=os.path.join(directory, "ca.pem"),
            other_ca_file=os.path.join(directory, "other-ca.pem"),
            admin_password=admin_password,
            service_password=service_password,
            people=people,
            groups=groups,
            ca_key=ca_key,
            ca_cert=ca_cert,
        )
        _wait_ready(server, time.monotonic() + 15)
        yield server
    finally:
        if process is not None:
            stop(process)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def slapd():
    with running_slapd() as server:
        yield server


# --- a slapd that takes SASL/GSSAPI binds ---------------------------------------------

SASL_SERVICE = "jupyterhub/hub.test"  # the hub's principal, mapped to SERVICE_DN


@pytest.fixture(scope="module")
def sasl_keytabs(realm):
    """``(directory, hub keytab, hub principal)``: slapd's ``ldap/127.0.0.1`` key and the
    hub's, in a fresh directory (removed afterwards), from the session realm."""
    directory = tempfile.mkdtemp(prefix="kerbauth-sasl-")
    try:
        add_principal(realm, "ldap/127.0.0.1", keytab=os.path.join(directory, "ldap.keytab"))
        hub_keytab = os.path.join(directory, "hub.keytab")
        principal = add_principal(realm, SASL_SERVICE, keytab=hub_keytab)
        yield directory, hub_keytab, principal
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def sasl_slapd(realm, sasl_keytabs):
    """A slapd that accepts SASL/GSSAPI binds from the session realm: its key named by
    KRB5_KTNAME, ``sasl-host`` 127.0.0.1, the hub's principal mapped to SERVICE_DN."""
    directory = sasl_keytabs[0]
    # slapd names a GSSAPI client uid=<principal without realm>,cn=<realm>,cn=gssapi,cn=auth.
    authn = f"uid={SASL_SERVICE},cn={realm.realm.lower()},cn=gssapi,cn=auth"
    extra = [
        "sasl-host 127.0.0.1",
        f"sasl-realm {realm.realm}",
        f'authz-regexp "^{authn}$" "{SERVICE_DN}"',
    ]
    env = {
        "KRB5_CONFIG": realm.env["KRB5_CONFIG"],
        "KRB5_KTNAME": os.path.join(directory, "ldap.keytab"),
    }
    with running_slapd(extra_conf=extra, env=env) as server:
        yield server


# --- servers that misbehave -----------------------------------------------------------


@pytest.fixture
def dead_server():
    """``(host, port)`` where nothing listens: connections are refused at once."""
    return "127.0.0.1", free_port()


@contextlib.contextmanager
def blackhole():
    """Yield ``(host, port)`` of a server that accepts TCP connections and never answers.

    Accepted connections are held open (not read, not closed) until the end,
    so a client waits for an answer that never comes.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.1)
    held = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, name="ldap-blackhole", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


@pytest.fixture
def blackhole_server():
    with blackhole() as address:
        yield address


@contextlib.contextmanager
def connect_hangs():
    """Yield ``(host, port)`` where a TCP connect hangs until the client gives up.

    A listener with a backlog of one that never accepts, filled by one
    connection of our own: the kernel drops further connection requests, as a
    firewall that drops packets would.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname(), timeout=5)
    try:
        yield listener.getsockname()
    finally:
        filler.close()
        listener.close()


@pytest.fixture
def hanging_server():
    with connect_hangs() as address:
        yield address
