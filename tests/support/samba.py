"""A throwaway Samba Active Directory domain controller, for AD's bind refusals.

Samba's AD DC answers a refused simple bind as Windows does
(``80090308: LdapErr: DSID-..., comment: AcceptSecurityContext error, data 532, v1db1``),
so the account states AD reports (password expired, must change, locked,
disabled, account expired, logon hours, workstations) are tested against it.

The domain is provisioned into a private directory (``samba-tool domain
provision --targetdir``, no DNS, only the LDAP service) and served by
``samba`` in the foreground. Samba's LDAP ports are fixed (389, 636, 3268,
3269) and it binds only addresses the kernel lists on an interface, so the
DC gets a loopback address of its own (a /32 added to ``lo``, removed at
teardown) whose ports nothing else uses. The users are written before Samba
starts, with Samba's own Python bindings (``/usr/bin/python3``), in one
process: a ``samba-tool`` call costs about a second each. The passwords go
to that process on stdin, never in argv.

Needs the Debian packages ``samba``, ``samba-ad-dc`` and ``samba-ad-provision``.
"""

import contextlib
import dataclasses
import ipaddress
import json
import os
import random
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

import ldap3
import pytest

from support.processes import stop
from support.slapd import make_ca, make_server_cert, write_cert, write_key

REALM = "AD.KERBAUTH.TEST"
DNS_DOMAIN = REALM.lower()
NETBIOS_DOMAIN = "KBTAD"
BASE_DN = "DC=ad,DC=kerbauth,DC=test"
USERS_DN = f"CN=Users,{BASE_DN}"
LOCKOUT_THRESHOLD = 3

# The users the fixture makes, each in the state its name says; "good" is in none.
STATES = (
    "good",
    "expired",  # password older than the domain's maxPwdAge: data 532
    "mustchange",  # pwdLastSet = 0: data 773
    "locked",  # LOCKOUT_THRESHOLD wrong binds: data 775
    "disabled",  # userAccountControl ACCOUNTDISABLE: data 533
    "acctexp",  # accountExpires in the past: data 701
    "nohours",  # logonHours all zero: data 530
    "elsewhere",  # userWorkstations lists another computer: data 531
)

# Run by Samba's Python (it is not importable from the venv). Reads
# {"conf", "dir", "dns_domain", "lockout_threshold", "admin", "users": {name: password}} on stdin.
_SEED = r"""
import glob, json, sys, time
import ldb
from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB

spec = json.load(sys.stdin)
lp = LoadParm()
lp.load(spec["conf"])
db = SamDB(url=spec["dir"] + "/private/sam.ldb", session_info=system_session(), lp=lp)
base = str(db.domain_dn())

def replace(dn, **values):
    m = ldb.Message()
    m.dn = ldb.Dn(db, dn)
    for name, value in values.items():
        m[name] = ldb.MessageElement(value, ldb.FLAG_MOD_REPLACE, name)
    db.modify(m)

db.setpassword("(sAMAccountName=Administrator)", spec["admin"])
for name, password in spec["users"].items():
    db.newuser(name, password)
users = "CN=Users," + base
replace(base, lockoutThreshold=str(spec["lockout_threshold"]))
replace("CN=disabled," + users, userAccountControl=str(0x200 | 0x2))
replace("CN=acctexp," + users, accountExpires="1")
replace("CN=mustchange," + users, pwdLastSet="0")
replace("CN=nohours," + users, logonHours=bytes(21))
replace("CN=elsewhere," + users, userWorkstations="NOWHERE")
del db

# A password set 100 days ago (the domain's maxPwdAge is 42): Samba's modules
# allow only 0 and -1 for pwdLastSet, so the partition is written without them.
raw = ldb.Ldb(glob.glob(spec["dir"] + "/private/sam.ldb.d/DC=*.ldb")[0], options=["modules:"])
old = int((time.time() - 100 * 86400 + 11644473600) * 10**7)
m = ldb.Message()
m.dn = ldb.Dn(raw, "CN=expired," + users)
m["pwdLastSet"] = ldb.MessageElement(str(old), ldb.FLAG_MOD_REPLACE, "pwdLastSet")
raw.modify(m)
"""


@dataclasses.dataclass
class SambaAD:
    directory: str
    address: str
    process: subprocess.Popen
    ca_file: str
    admin_password: str
    passwords: dict  # user -> password
    log_path: str

    def connection(self, user, password):
        """A connection over verified StartTLS after one bind as ``user`` (a UPN)."""
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=self.ca_file)
        server = ldap3.Server(self.address, port=389, tls=tls, connect_timeout=5)
        conn = ldap3.Connection(server, user=user, password=password, receive_timeout=10)
        conn.open()
        conn.start_tls()
        conn.bind()
        return conn

    def bind_result(self, user, password):
        """The result dict of one simple bind as ``user``."""
        conn = self.connection(user, password)
        try:
            return dict(conn.result)
        finally:
            conn.unbind()

    def upn(self, name):
        return f"{name}@{DNS_DOMAIN}"


def _password():
    # Meets the domain's default complexity rule (three character classes, 7+ long).
    return "Kb-" + "".join(random.SystemRandom().choices("abcdefghjkmnpqrstuvwxyz", k=10)) + "7Q"


def _ports_free(address, ports=(389, 636, 3268, 3269)):
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind((address, port))
            except OSError:
                return False
    return True


def _on_lo():
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", "lo"], capture_output=True)
    return {line.split()[3].split("/")[0] for line in out.stdout.decode().splitlines()}


def _pick_address():
    """A 127.0.x.y not on ``lo`` yet whose AD ports are free."""
    taken = _on_lo()
    rng = random.SystemRandom()
    for _ in range(50):
        address = str(ipaddress.IPv4Address("127.0.0.0") + rng.randrange(2 << 8, 250 << 8))
        if address not in taken and not address.endswith((".0", ".255")) and _ports_free(address):
            return address
    raise RuntimeError("no free loopback address for the Samba DC")


def _wait_ready(ad, deadline):
    """Poll until the Administrator's bind succeeds; raise with Samba's log if it never does."""
    last = None
    while time.monotonic() < deadline:
        if ad.process.poll() is not None:
            break
        try:
            if ad.bind_result(f"Administrator@{DNS_DOMAIN}", ad.admin_password)["result"] == 0:
                return
        except ldap3.core.exceptions.LDAPException as e:
            last = e
        time.sleep(0.1)
    with open(ad.log_path, encoding="utf-8", errors="replace") as f:
        log = f.read()[-4000:]
    raise RuntimeError(f"samba did not come up ({last}; exit {ad.process.poll()}):\n{log}")


def _run(argv, **kwargs):
    done = subprocess.run(argv, capture_output=True, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(
            f"{argv[0]} {argv[1][:40]!r} failed ({done.returncode}):\n"
            + done.stdout.decode(errors="replace")[-2000:]
            + done.stderr.decode(errors="replace")[-2000:]
        )
    return done


@contextlib.contextmanager
def running_samba_ad():
    """Provision and start a Samba AD DC; yield a :class:`SambaAD`; stop it and remove
    everything (process, directory, loopback address), whatever happened."""
    if not shutil.which("samba") or not shutil.which("samba-tool"):
        raise RuntimeError("Samba is not installed (samba, samba-ad-dc, samba-ad-provision)")
    directory = tempfile.mkdtemp(prefix="kerbauth-samba-")
    address = None
    added = False
    process = None
    try:
        address = _pick_address()
        _run(["ip", "addr", "add", f"{address}/32", "dev", "lo"])
        added = True
        tls = os.path.join(directory, "tls")
        os.mkdir(tls, 0o700)
        ca_key, ca_cert = make_ca("kerbauth test AD CA")
        key, cert = make_server_cert(ca_key, ca_cert, names=(f"dc1.{DNS_DOMAIN}",), ips=(address,))
        write_cert(os.path.join(tls, "ca.pem"), ca_cert)
        write_cert(os.path.join(tls, "cert.pem"), cert)
        write_key(os.path.join(tls, "key.pem"), key)
        run_dir = os.path.join(directory, "run")
        os.mkdir(run_dir, 0o700)
        # An empty base config: Debian's /etc/samba/smb.conf is not read.
        empty = os.path.join(directory, "empty.conf")
        open(empty, "w").close()
        options = {
            "interfaces": address,
            "bind interfaces only": "yes",
            "server services": "ldap",
            "log file": os.path.join(directory, "log.%m"),
            "pid directory": run_dir,
            "tls keyfile": os.path.join(tls, "key.pem"),
            "tls certfile": os.path.join(tls, "cert.pem"),
            "tls cafile": os.path.join(tls, "ca.pem"),
        }
        admin_password = _password()
        # No --adminpass (argv): provisioning picks a random one, the seed replaces it.
        provision = [
            "samba-tool", "domain", "provision",
            f"--configfile={empty}",
            f"--targetdir={directory}",
            f"--realm={REALM}",
            f"--domain={NETBIOS_DOMAIN}",
            "--server-role=dc",
            "--dns-backend=NONE",
            "--host-name=dc1",
            *(f"--option={k} = {v}" for k, v in options.items()),
        ]  # fmt: skip
        _run(provision, cwd=directory)
        conf = os.path.join(directory, "etc", "smb.conf")
        passwords = {name: _password() for name in STATES}
        seed = {
            "conf": conf,
            "dir": directory,
            "dns_domain": DNS_DOMAIN,
            "lockout_threshold": LOCKOUT_THRESHOLD,
            "admin": admin_password,
            "users": passwords,
        }
        _run(["/usr/bin/python3", "-c", _SEED], input=json.dumps(seed).encode(), cwd=directory)
        log_path = os.path.join(directory, "samba.log")
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                ["samba", "-s", conf, "--foreground", "--no-process-group", "-M", "single",
                 "--debug-stdout", "--debuglevel=1"],
                stdin=subprocess.PIPE,  # Samba in the foreground exits when this closes
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=directory,
                start_new_session=True,
            )  # fmt: skip
        ad = SambaAD(
            directory=directory,
            address=address,
            process=process,
            ca_file=os.path.join(tls, "ca.pem"),
            admin_password=admin_password,
            passwords=passwords,
            log_path=log_path,
        )
        _wait_ready(ad, time.monotonic() + 30)
        for _ in range(LOCKOUT_THRESHOLD):
            ad.bind_result(ad.upn("locked"), "not-" + passwords["locked"])
        yield ad
    finally:
        if process is not None:
            process.stdin.close()
            stop(process)
        if added:
            subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", "lo"], capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def samba_ad():
    """A running Samba AD DC with one user in each state of :data:`STATES` (module-scoped:
    provisioning takes 10-25 s)."""
    with running_samba_ad() as ad:
        yield ad
