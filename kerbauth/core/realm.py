"""The default realm and the rest of krb5.conf, read in one place.

The default realm comes from libkrb5 itself (``krb5.get_default_realm``)
when the krb5 bindings are installed, so it is exactly the realm kinit and
the library would use. Without them, :func:`read_krb5_conf` reads the files
as MIT's profile library does, following ``include`` and ``includedir``
(Debian and RHEL put ``default_realm`` in ``/etc/krb5.conf.d/``). The doctor
reads everything else it shows of krb5.conf through the same reader.
"""

import glob
import importlib.util
import os
import re
from dataclasses import dataclass, field

__all__ = ["Krb5Conf", "krb5_conf_paths", "read_krb5_conf", "default_realm", "DEFAULT_PATH"]

DEFAULT_PATH = "/etc/krb5.conf"

# How deep includes may nest; MIT stops a loop of includes the same way.
MAX_INCLUDE_DEPTH = 8

# The names MIT reads from an includedir: letters, digits, "-" and "_", or ending in .conf.
_INCLUDED_NAME = re.compile(r"[A-Za-z0-9_-]+|.+\.conf")


@dataclass
class Krb5Conf:
    """What the krb5.conf files say that kerbauth uses (the first value of a name wins)."""

    files: list = field(default_factory=list)  # the files read, includes followed, in order
    libdefaults: dict = field(default_factory=dict)  # name -> first value
    realms: dict = field(default_factory=dict)  # realm -> {name: [values]}


def krb5_conf_paths(environ=None):
    """The krb5.conf files the library reads: ``$KRB5_CONFIG`` (colon-separated) or the default."""
    environ = os.environ if environ is None else environ
    return environ.get("KRB5_CONFIG", DEFAULT_PATH).split(":")


def read_krb5_conf(paths=None):
    """The :class:`Krb5Conf` of the files ``paths`` (default :func:`krb5_conf_paths`).

    Follows ``include`` and ``includedir`` as MIT does; files that cannot be
    read are left out of ``files``, as the library skips them.
    """
    conf = Krb5Conf()
    for path in krb5_conf_paths() if paths is None else paths:
        _read_file(path, conf, depth=0)
    return conf


def _read_file(path, conf, depth):
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
        target = target.strip()
        if word in ("include", "includedir") and target:
            if depth < MAX_INCLUDE_DEPTH:
                for name in _included(word, target):
                    _read_file(name, conf, depth + 1)
            continue
        if line.startswith("[") and "]" in line:
            section, realm, nesting = line[1 : line.index("]")].strip(), None, 0
            continue
        if line == "}":
            nesting -= 1
            if nesting == 0:
                realm = None
            continue
        name, eq, value = line.partition("=")
        name, value = name.strip(), value.strip()
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


def _included(word, target):
    if word == "include":
        return [target]
    names = sorted(glob.glob(os.path.join(glob.escape(target), "*")))
    return [name for name in names if _INCLUDED_NAME.fullmatch(os.path.basename(name))]


def default_realm(environ=None):
    """The default realm of this host's Kerberos configuration, or None when it names none.

    With the krb5 bindings installed and ``environ`` not given, libkrb5
    answers (reading ``$KRB5_CONFIG`` as kinit does, and DNS when
    ``dns_lookup_realm`` says so); otherwise
    :func:`read_krb5_conf` reads the files ``environ`` names.
    """
    if environ is None and importlib.util.find_spec("krb5") is not None:
        return _library_default_realm()
    return read_krb5_conf(krb5_conf_paths(environ)).libdefaults.get("default_realm") or None


# libkrb5's KRB5_CONFIG_NODEFREALM: the configuration names no default realm.
NO_DEFAULT_REALM = -1765328160


def _library_default_realm():
    import krb5

    try:
        realm = krb5.get_default_realm(krb5.init_context())
    except krb5.Krb5Error as e:
        if e.err_code == NO_DEFAULT_REALM:
            return None
        # A krb5.conf the library cannot parse: say what the files say; the
        # doctor and the first ticket request report the library's error.
        return read_krb5_conf().libdefaults.get("default_realm") or None
    return realm.decode("utf-8", "replace") or None
