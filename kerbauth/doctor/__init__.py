"""``kerbauth doctor``: which piece of a deployment is wrong, before users find out.

The doctor reads a ``jupyterhub_config.py`` the way the hub does and builds
the configured authenticator from it, so every check uses the options the
hub would use. Each check is a plain function of a :class:`Site` that returns
``(status, message, hint)``; :func:`run` runs them in order and
:func:`format_result` makes one line of each. Network checks are bounded by a
timeout. No password is ever printed.
"""

import dataclasses
import glob
import importlib
import logging
import os
import pwd
import re
import shutil
import socket
import stat
import tempfile
import time
import types
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from traitlets.config import Config, PyFileConfigLoader

from kerbauth.auth.ldap import directory as ldap_directory
from kerbauth.core import cache_directory, ccache, tickets
from kerbauth.core.errors import KeytabError, TicketError
from kerbauth.core.kdc_probe import probe_kdc
from kerbauth.core.keytab import open_keytab
from kerbauth.core.names import InvalidUsername
from kerbauth.hub.tickets import KerberosTickets

__all__ = [
    "OK",
    "PROBLEM",
    "SKIP",
    "Site",
    "Result",
    "load_site",
    "read_krb5_conf",
    "keytab_entries",
    "run",
    "format_result",
    "CHECKS",
]

OK = "ok"
PROBLEM = "problem"
SKIP = "skip"  # does not apply here (no --user, PAM mode, ...); not a failure


class ConfigError(Exception):
    """The config file cannot be loaded or names no usable authenticator."""


class NotApplicable(Exception):
    """A check that has no meaning here (LDAP checks in PAM mode): no line at all."""


class Skip(Exception):
    """A check that does not apply, or whose prerequisite failed; the message says why."""


@dataclass
class Site:
    """What the checks look at: the loaded config, the authenticator, the user asked about."""

    config_file: str
    config: Config
    authenticator_class: type
    authenticator: KerberosTickets  # built from the config, without starting anything
    username: str | None = None
    timeout: float = 5.0
    facts: dict = field(default_factory=dict)  # what one check learnt for the next ones


@dataclass(frozen=True)
class Result:
    name: str
    status: str
    message: str
    hint: str = ""


# --- loading the config -----------------------------------------------------------


def load_config(path):
    """The traitlets Config of the ``jupyterhub_config.py`` at ``path``."""
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"{path} does not exist")
    loader = PyFileConfigLoader(os.path.basename(path), path=os.path.dirname(path))
    try:
        return loader.load_config()
    except Exception as e:
        raise ConfigError(f"{path} cannot be loaded: {type(e).__name__}: {e}") from None


def resolve_authenticator_class(value):
    """The class ``JupyterHub.authenticator_class`` names (a class, entry point or dotted path)."""
    if isinstance(value, type):
        return value
    name = str(value)
    for ep in entry_points(group="jupyterhub.authenticators"):
        if ep.name == name:
            return ep.load()
    module, _, attribute = name.rpartition(".")
    if not module:
        raise ConfigError(f"JupyterHub.authenticator_class {name!r} is no installed authenticator")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as e:
        raise ConfigError(
            f"JupyterHub.authenticator_class {name!r} cannot be imported: {e}"
        ) from None


def _without_backend(self):
    return None


def build_authenticator(cls, config):
    """An instance of ``cls`` configured from ``config``, that starts nothing.

    A subclass of the same name reads exactly the same config sections; it
    only skips making the ticket backend (which would also create
    ``ccache_dir``). The hub's own start-up checks run in :func:`check_startup`.
    """
    view = types.new_class(
        cls.__name__,
        (cls,),
        exec_body=lambda ns: ns.update(
            {"_make_ticket_backend": _without_backend, "__module__": cls.__module__}
        ),
    )
    return view(config=config)


def load_site(config_file, username=None, timeout=5.0):
    """A :class:`Site` for ``config_file``; ConfigError when the hub could not use it either."""
    config = load_config(config_file)
    if "authenticator_class" not in config.JupyterHub:
        raise ConfigError(
            "JupyterHub.authenticator_class is not set (the hub would use PAM without kerbauth)"
        )
    cls = resolve_authenticator_class(config.JupyterHub.authenticator_class)
    if not (isinstance(cls, type) and issubclass(cls, KerberosTickets)):
        raise ConfigError(
            f"JupyterHub.authenticator_class is {cls!r}, not a kerbauth authenticator"
            ' ("kerberos-pam" or "kerberos-ldap")'
        )
    try:
        authenticator = build_authenticator(cls, config)
    except Exception as e:
        raise ConfigError(f"{cls.__name__} refuses this configuration: {e}") from None
    if username is not None:
        username = authenticator.normalize_username(username)
    return Site(os.path.abspath(config_file), config, cls, authenticator, username, timeout)


# --- krb5.conf ----------------------------------------------------------------------


@dataclass
class Krb5Conf:
    files: list  # the files read, includes followed
    libdefaults: dict  # name -> first value
    realms: dict  # realm -> {name: [values]}


def read_krb5_conf(paths):
    """The parts of the krb5.conf files ``paths`` the doctor needs (first value wins).

    Follows ``include`` and ``includedir`` as MIT does. Missing files are left
    out of ``files``.
    """
    conf = Krb5Conf([], {}, {})
    for path in paths:
        _read_profile(path, conf, depth=0)
    return conf


def _read_profile(path, conf, depth):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return
    conf.files.append(path)
    section, realm, nesting = None, None, 0
    for raw in lines:
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        word, _, target = line.partition(" ")
        if word in ("include", "includedir") and target:
            if depth < 8:
                targets = [target.strip()]
                if word == "includedir":
                    targets = sorted(glob.glob(os.path.join(target.strip(), "*")))
                    # MIT reads only names of letters, digits, "-" and "_", or ending in .conf.
                    targets = [t for t in targets if _INCLUDED.fullmatch(os.path.basename(t))]
                for name in targets:
                    _read_profile(name, conf, depth + 1)
            continue
        if line.startswith("[") and "]" in line:
            section, realm, nesting = line[1 : line.index("]")].strip(), None, 0
            continue
        name, eq, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if line == "}":
            nesting -= 1
            if nesting == 0:
                realm = None
            continue
        if value == "{":
            nesting += 1
            if section == "realms" and nesting == 1:
                realm = name
                conf.realms.setdefault(realm, {})
            continue
        if not eq:
            continue
        if section == "libdefaults" and nesting == 0:
            conf.libdefaults.setdefault(name, value)
        elif section == "realms" and nesting == 1 and realm:
            conf.realms[realm].setdefault(name, []).append(value)


_INCLUDED = re.compile(r"[A-Za-z0-9_-]+|.+\.conf")


def krb5_conf_paths():
    """The krb5.conf files the library reads: ``$KRB5_CONFIG`` or /etc/krb5.conf."""
    return os.environ.get("KRB5_CONFIG", "/etc/krb5.conf").split(":")


def parse_kdc(value):
    """``(transports, host, port)`` of a ``kdc =`` value, or None for an HTTPS (KKDCP) one."""
    value = value.rstrip("*").strip()
    if value.startswith(("http://", "https://", "kkdcp://")):
        return None
    transports = ("tcp", "udp")
    for prefix in ("tcp/", "udp/"):
        if value.startswith(prefix):
            transports, value = (prefix[:3],), value[4:]
    if value.startswith("["):  # [IPv6]:port
        host, _, rest = value[1:].partition("]")
        port = rest.lstrip(":") or "88"
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, "88"
    return transports, host, int(port)


# --- the checks ------------------------------------------------------------------


def check_config(site):
    a = site.authenticator
    names = {
        ep.value.split(":")[-1]: ep.name for ep in entry_points(group="jupyterhub.authenticators")
    }
    shown = names.get(site.authenticator_class.__name__, site.authenticator_class.__name__)
    source = "the login password" if a.password_tickets else f"keytabs {a.keytab_template}"
    backend = a.backend or ("krb5" if tickets.krb5_available() else "kinit")
    return (
        OK,
        f"{shown}, tickets from {source} through the {backend} backend",
        "",
    )


def check_startup(site):
    """The hub's own start-up checks, on a real instance (a private ``ccache_dir`` if absent)."""
    config = Config(site.config)
    private = None
    if not os.path.isdir(site.authenticator.ccache_dir):
        private = tempfile.mkdtemp(prefix="kerbauth-doctor-")
        config[site.authenticator_class.__name__].ccache_dir = os.path.join(private, "cc")
    try:
        instance = site.authenticator_class(config=config)
    except Exception as e:
        return (PROBLEM, f"the hub would refuse to start: {e}", "fix the option the message names")
    finally:
        if private:
            shutil.rmtree(private, ignore_errors=True)
    backend = getattr(instance, "ticket_backend", None)
    if hasattr(backend, "close"):
        backend.close()
    instance._ticket_executor.shutdown(wait=False)
    return (OK, "the hub's start-up checks of these options pass", "")


def check_krb5_conf(site):
    paths = krb5_conf_paths()
    conf = read_krb5_conf(paths)
    site.facts["krb5_conf"] = conf
    where = ":".join(paths)
    if not conf.files:
        return (
            PROBLEM,
            f"no krb5.conf could be read ({where})",
            "install krb5.conf, or set KRB5_CONFIG in the hub's environment",
        )
    realm = site.authenticator.realm
    if not realm:
        return (
            PROBLEM,
            f"{where} names no default_realm and KerberosTickets.realm is not set",
            "set default_realm in [libdefaults] or c.KerberosTickets.realm",
        )
    unreadable = [p for p in conf.files if not os.stat(p).st_mode & stat.S_IROTH]
    if unreadable:
        return (
            PROBLEM,
            f"{', '.join(unreadable)} is not readable by other users; servers run as the user",
            f"chmod 644 {' '.join(unreadable)}",
        )
    if realm not in conf.realms:
        lookup = conf.libdefaults.get("dns_lookup_kdc", "true").lower()
        if lookup in ("false", "no", "0", "off"):
            return (
                PROBLEM,
                f"{where} has no [realms] entry for {realm} and dns_lookup_kdc is off",
                f"add {realm} = {{ kdc = <host> }} under [realms]",
            )
        return (OK, f"{where}: realm {realm}, KDCs from DNS", "")
    kdcs = conf.realms[realm].get("kdc", [])
    return (OK, f"{where}: realm {realm}, KDCs {', '.join(kdcs) or 'from DNS'}", "")


def check_kdc(site):
    conf = site.facts.get("krb5_conf")
    realm = site.authenticator.realm
    if conf is None or not realm:
        raise Skip("needs a readable krb5.conf and a realm")
    values = conf.realms.get(realm, {}).get("kdc", [])
    if not values:
        raise Skip(f"the KDCs of {realm} come from DNS; the ticket check (--user) reaches them")
    answered, failed = [], []
    for value in values:
        kdc = parse_kdc(value)
        if kdc is None:
            failed.append(f"{value}: an HTTPS proxy, not probed")
            continue
        transports, host, port = kdc
        errors = []
        for transport in transports:
            try:
                answer = probe_kdc(host, port, realm, transport, site.timeout)
            except (OSError, ValueError) as e:
                errors.append(f"{transport}: {_describe(e)}")
                continue
            if answer.realm != realm or answer.code == 68:
                errors.append(f"{transport}: answers for realm {answer.realm}, not {realm}")
                continue
            answered.append(f"{host}:{port}/{transport}")
            break
        else:
            failed.append(f"{host}:{port} ({'; '.join(errors)})")
    if failed:
        return (
            PROBLEM,
            f"KDC of {realm} not answering: {', '.join(failed)}",
            "start the KDC (krb5kdc), open the firewall to it, or fix kdc = in krb5.conf",
        )
    return (OK, f"KDC of {realm} answers at {', '.join(answered)}", "")


def _describe(error):
    if isinstance(error, TimeoutError):
        return "no answer in time"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _fetching(site):
    return getattr(site.authenticator, "delivery", "file") == "fetch"


def check_ccache_dir(site):
    if _fetching(site):
        raise Skip('KerberosTickets.delivery = "fetch": servers write their own caches')
    path = site.authenticator.ccache_dir
    hint = f"mkdir -p {path} && chown root: {path} && chmod 711 {path}"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        parent = os.path.dirname(path.rstrip("/")) or "/"
        if os.path.isdir(parent):
            try:
                cache_directory.check_ccache_parent(path)
            except TicketError as e:
                return (PROBLEM, e.detail, hint)
            return (OK, f"{path} does not exist yet; the hub creates it (mode 0711)", "")
        return (PROBLEM, f"{path} cannot be created: {parent} does not exist", hint)
    if stat.S_ISDIR(st.st_mode):
        try:
            cache_directory.prepare_ccache_dir(path)  # an existing directory is only checked
        except TicketError as e:
            return (PROBLEM, e.detail, hint)
    else:
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a directory"
        return (PROBLEM, f"KerberosTickets.ccache_dir {path} is {kind}", hint)
    mode = stat.S_IMODE(st.st_mode)
    if not mode & stat.S_IXOTH:
        return (
            PROBLEM,
            f"{path} has mode {mode:04o}: the users' servers cannot reach their caches in it",
            f"chmod 711 {path}",
        )
    return (OK, f"{path}: owner uid {st.st_uid}, mode {mode:04o}", "")


def _user_paths(site):
    """``(principal, keytab, uid, gid)`` of the user asked about; Skip without one."""
    a = site.authenticator
    if site.username is None:
        raise Skip("give --user NAME to check a user's keytab and ticket")
    if a.password_tickets:
        raise Skip("KerberosTickets.password_tickets: tickets come from the login password")
    if not a.keytab_template:
        raise Skip("KerberosTickets.keytab_template is not set")
    try:
        principal = tickets.build_principal(a.principal_template, site.username, a.realm)
        keytab = tickets.keytab_path(a.keytab_template, site.username)
    except InvalidUsername as e:
        raise Skip(str(e)) from None
    if _fetching(site):
        # The hub reads the keytab as itself and hands the ticket over the API.
        return principal, keytab, os.geteuid(), os.getegid()
    try:
        uid, gid = a.ticket_owner(types.SimpleNamespace(name=site.username))
    except TicketError as e:
        raise Skip(e.detail) from None
    return principal, keytab, uid, gid


def check_account(site):
    if site.username is None:
        raise Skip("give --user NAME to check a user's account, keytab and ticket")
    if _fetching(site):
        raise Skip('KerberosTickets.delivery = "fetch": servers need no account on the hub')
    try:
        entry = pwd.getpwnam(site.username)
    except KeyError:
        return (
            PROBLEM,
            f"there is no local account {site.username!r}: the spawner cannot run the server",
            "create the account, or make it visible through NSS (sssd, nslcd)",
        )
    return (OK, f"local account {entry.pw_name}: uid {entry.pw_uid}, home {entry.pw_dir}", "")


def check_keytab(site):
    principal, keytab, uid, _ = _user_paths(site)
    try:
        fd = open_keytab(keytab, uid)
    except KeytabError as e:
        site.facts["keytab"] = False
        return (PROBLEM, e.detail, _keytab_hint(e.reason, keytab, uid))
    try:
        st = os.fstat(fd)
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(1 << 20)
    finally:
        os.close(fd)
    try:
        entries = keytab_entries(data)
    except ValueError as e:
        site.facts["keytab"] = False
        return (PROBLEM, f"keytab {keytab} cannot be read: {e}", "export the keytab again")
    kvnos = sorted({kvno for name, kvno, _ in entries if name == principal})
    site.facts["keytab"] = bool(kvnos)
    if not kvnos:
        found = sorted({name for name, _, _ in entries})
        return (
            PROBLEM,
            f"keytab {keytab} holds no key of {principal} (it has: {', '.join(found) or 'none'})",
            f"kadmin: ktadd -k {keytab} {principal}",
        )
    mode = stat.S_IMODE(st.st_mode)
    return (
        OK,
        f"keytab {keytab}: owner uid {st.st_uid}, mode {mode:04o}, {principal} kvno"
        f" {', '.join(map(str, kvnos))}",
        "",
    )


def _keytab_hint(reason, keytab, uid):
    if "mode" in reason:
        return f"chmod 600 {keytab}"
    if "owned by" in reason:
        return f"chown {pwd.getpwuid(uid).pw_name} {keytab}  (or root)"
    if "does not exist" in reason:
        return f"export it: kadmin -q 'ktadd -k {keytab} <principal>', then chmod 600 it"
    return f"make {keytab} a regular file, mode 0600, owned by the user or root"


def check_ticket(site):
    principal, keytab, uid, gid = _user_paths(site)
    if site.facts.get("keytab") is False:
        raise Skip("needs a usable keytab (see the keytab line)")
    a = site.authenticator
    backend = None
    try:
        backend = tickets.make_backend(a.backend, a.kinit_path, max_workers=1)
        data = tickets.keytab_ticket_bytes(
            backend,
            principal=principal,
            keytab=keytab,
            keytab_owner=uid,
            timeout=a.timeout,
            run_as=(uid, gid) if os.geteuid() == 0 and uid != 0 else None,
        )
        got = ccache.parse_ccache(data)
    except TicketError as e:
        return (PROBLEM, f"no ticket for {principal}: {e}", _TICKET_HINTS.get(e.cause, ""))
    finally:
        if hasattr(backend, "close"):
            backend.close()
    ends = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(got.end))
    return (OK, f"got a ticket for {got.principal} through {backend.name}, valid until {ends}", "")


_TICKET_HINTS = {
    "keytab": "export the user's current key again (kadmin: ktadd -k <keytab> <principal>)",
    "principal": "create the principal, or fix KerberosTickets.principal_template",
    "kdc_unreachable": "start the KDC or fix kdc = in krb5.conf",
    "timeout": "the KDC is slow or filtered; check the network path to it",
    "clock_skew": "synchronise this host's clock with the KDC (NTP)",
    "config": "fix krb5.conf or the option the message names",
}


# --- LDAP ------------------------------------------------------------------------------


def _ldap(site):
    """``(Directory, UserQuery)`` exactly as the LDAP authenticator builds them.

    NotApplicable for other authenticators. Timeouts are capped at the
    doctor's ``--timeout``.
    """
    settings = getattr(site.authenticator, "_ldap_settings", None)
    if settings is None:
        raise NotApplicable
    directory, query = settings()
    directory = dataclasses.replace(
        directory,
        connect_timeout=min(directory.connect_timeout, site.timeout),
        # ldap3 packs the receive timeout into a struct of whole seconds on Linux.
        receive_timeout=max(1, int(min(directory.receive_timeout, site.timeout))),
    )
    return directory, query


def check_ldap_servers(site):
    directory, _ = _ldap(site)
    answered, failed = [], []
    for server in directory.servers:
        try:
            socket.create_connection((server.host, server.port), directory.connect_timeout).close()
        except OSError as e:
            failed.append(f"{server} ({_describe(e)})")
        else:
            answered.append(str(server))
    site.facts["ldap_servers"] = [s for s in directory.servers if str(s) in answered]
    if failed:
        return (
            PROBLEM,
            f"LDAP server not reachable: {', '.join(failed)}",
            "start it, open the firewall, or fix KerberosLDAPAuthenticator.server_address"
            " / server_port",
        )
    return (OK, f"LDAP servers accept connections: {', '.join(answered)}", "")


def _lookup(site, directory, query, username, servers=None):
    """``ldap_directory.lookup_user`` on ``servers`` (default: all), its warnings kept quiet."""
    if servers is not None:
        directory = dataclasses.replace(directory, servers=list(servers))
    return ldap_directory.lookup_user(directory, query, username, _QUIET)


_QUIET = logging.getLogger("kerbauth.doctor.quiet")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False

# A name looked up to exercise connect, TLS, bind and search when no --user is given.
PROBE_USER = "kerbauth-doctor-probe"


def check_ldap_tls(site):
    """Connect to each server and ask it something anonymously, through the LDAP module.

    Any answer (an entry, none, or a refusal) means the TLS handshake with
    the configured CA and host name check passed; DirectoryUnavailable means
    the connection or the TLS check failed.
    """
    directory, query = _ldap(site)
    if directory.tls_strategy == "insecure":
        return (
            PROBLEM,
            'KerberosLDAPAuthenticator.tls_strategy is "insecure": passwords cross the'
            " network in clear text",
            'use "starttls" or "ldaps", with tls_ca_file set to the CA of the servers',
        )
    servers = site.facts.get("ldap_servers")
    if not servers:
        raise Skip("no LDAP server reachable")
    anonymous = dataclasses.replace(query, search_bind_dn="", search_bind_password="")
    trusted = site.authenticator.tls_ca_file or "the system's CAs"
    verified, failed = [], []
    for server in servers:
        try:
            _lookup(site, directory, anonymous, PROBE_USER, [server])
        except ldap_directory.DirectoryUnavailable as e:
            failed.append(f"{server} ({str(e).split(f'{server}: ', 1)[-1]})")
            continue
        except ldap_directory.DirectoryError:
            pass  # it answered, over TLS: refusing an anonymous question is fine
        verified.append(server)
    site.facts["ldap_tls_servers"] = verified
    if failed:
        return (
            PROBLEM,
            f"TLS ({directory.tls_strategy}) with {', '.join(failed)} failed, trusting {trusted}",
            "set KerberosLDAPAuthenticator.tls_ca_file to the CA that signed the servers'"
            " certificates, and use the host names the certificates name",
        )
    shown = ", ".join(map(str, verified))
    return (OK, f"TLS ({directory.tls_strategy}) verified with {shown}, trusting {trusted}", "")


def _usable_servers(site, directory):
    if directory.tls_strategy == "insecure":
        servers = site.facts.get("ldap_servers")
    else:
        servers = site.facts.get("ldap_tls_servers")
    if not servers:
        raise Skip("needs a reachable LDAP server that passes the TLS check")
    return servers


def check_ldap_bind(site):
    directory, query = _ldap(site)
    if not query.search_bind_dn:
        raise Skip("no KerberosLDAPAuthenticator.search_bind_dn: searches are anonymous")
    server = _usable_servers(site, directory)[0]
    try:
        _lookup(site, directory, query, PROBE_USER, [server])
    except ldap_directory.DirectoryError as e:
        return (
            PROBLEM,
            f"{server}: {e}",
            "check KerberosLDAPAuthenticator.search_bind_dn and search_bind_password",
        )
    site.facts["ldap_bind"] = True
    return (OK, f"bound as {query.search_bind_dn} on {server}", "")


def check_ldap_lookup(site):
    directory, query = _ldap(site)
    if site.username is None:
        raise Skip("give --user NAME to look the user up")
    if not query.search_bind_dn:
        raise Skip("without search_bind_dn only the user's own password can read their entry")
    if not site.facts.get("ldap_bind"):
        raise Skip("needs the service bind (see the ldap-bind line)")
    servers = _usable_servers(site, directory)
    try:
        found = _lookup(site, directory, query, site.username, servers)
    except ldap_directory.DirectoryError as e:
        return (PROBLEM, f"the lookup of {site.username!r} failed: {e}", "")
    if found is None:
        where = query.search_base or " or ".join(query.bind_dn_templates)
        return (
            PROBLEM,
            f"no LDAP entry for {site.username!r} ({where})",
            "check bind_dn_template, or user_search_base and user_search_filter",
        )
    return (OK, f"{site.username} is {found[0]}", "")


# --- keytab contents ---------------------------------------------------------------


def keytab_entries(data):
    """``[(principal, kvno, enctype), ...]`` of the bytes of a FILE keytab (format 0x0502)."""
    if len(data) < 2 or data[0] != 5 or data[1] != 2:
        raise ValueError("not a version 2 keytab")
    entries, pos = [], 2
    while pos + 4 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big", signed=True)
        pos += 4
        if size < 0:  # a hole left by a removed entry
            pos -= size
            continue
        if size == 0:
            break
        entry = data[pos : pos + size]
        if len(entry) < size:
            raise ValueError("truncated entry")
        pos += size
        entries.append(_keytab_entry(entry))
    return entries


def _keytab_entry(entry):
    count = int.from_bytes(entry[0:2], "big")
    at = 2

    def counted():
        nonlocal at
        n = int.from_bytes(entry[at : at + 2], "big")
        value = entry[at + 2 : at + 2 + n]
        at += 2 + n
        return value.decode("utf-8", "replace")

    realm = counted()
    components = [counted() for _ in range(count)]
    at += 4 + 4  # name type, timestamp
    kvno = entry[at]
    enctype = int.from_bytes(entry[at + 1 : at + 3], "big")
    key_length = int.from_bytes(entry[at + 3 : at + 5], "big")
    at += 5 + key_length
    if at + 4 <= len(entry):  # the 32-bit kvno, when present and set
        kvno = int.from_bytes(entry[at : at + 4], "big") or kvno
    return "/".join(components) + "@" + realm, kvno, enctype


# --- running them ------------------------------------------------------------------

# (name, check) in the order they run and are printed.
CHECKS = [
    ("config", check_config),
    ("startup", check_startup),
    ("krb5.conf", check_krb5_conf),
    ("kdc", check_kdc),
    ("ccache_dir", check_ccache_dir),
    ("account", check_account),
    ("keytab", check_keytab),
    ("ticket", check_ticket),
    ("ldap", check_ldap_servers),
    ("ldap-tls", check_ldap_tls),
    ("ldap-bind", check_ldap_bind),
    ("ldap-lookup", check_ldap_lookup),
]


def run(site, checks=None):
    """Run ``checks`` (default :data:`CHECKS`) on ``site``; yield a :class:`Result` each."""
    for name, check in CHECKS if checks is None else checks:
        try:
            status, message, hint = check(site)
        except NotApplicable:
            continue
        except Skip as e:
            status, message, hint = SKIP, str(e), ""
        except Exception as e:  # a check must never hide the ones after it
            status, message, hint = PROBLEM, f"the check failed: {type(e).__name__}: {e}", ""
        yield Result(name, status, message, hint)


def format_result(result):
    """One line: status, check name, message, and the hint after ``hint:``."""
    line = f"{result.status:<8}{result.name:<12}{result.message}"
    if result.hint:
        line += f"  hint: {result.hint}"
    return line
