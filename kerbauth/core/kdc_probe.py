"""Asking the realm's KDCs whether they are there, through the Kerberos library itself.

The probe makes one AS exchange through the configured backend: the krb5
bindings (``krb5.get_etype_info``, in a child Python) or the ``kinit``
program (with no password to give: it stops at the password prompt). Either
way libkrb5 finds the KDCs as it would for a ticket (krb5.conf, DNS SRV and
URI records, KDC proxies, every address of a host), and its trace
(``KRB5_TRACE``, under ``LC_ALL=C``) says which KDC it asked over which
transport and which answered. The principal asked about defaults to the
realm's own ``krbtgt/REALM@REALM``, which every KDC of the realm knows, so
"client not found" means a KDC of another realm. No password, key or ticket
is ever sent or kept, and the child is killed at the timeout.

For a KDC that did not answer, :func:`why_unanswered` says why in the
words of the socket layer (refused, unreachable, no answer in time).
"""

import os
import re
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from kerbauth.core.address import parse_address
from kerbauth.core.realm import krb5_conf_paths

__all__ = ["KdcProbe", "probe_kdc", "parse_trace", "why_unanswered"]

# Prepended to the site's krb5.conf for the probe: TCP first (the first value of a
# name wins), so an answer over TCP is what is reported; UDP is still tried after it.
PROBE_PROFILE = "[libdefaults]\n  udp_preference_limit = 1\n"

# The library's error codes are RFC 4120's plus this base (KRB5KDC_ERR_NONE).
KDC_ERROR_BASE = -1765328384
CLIENT_NOT_FOUND = 6
WRONG_REALM = 68

# The child run for the krb5 backend: one AS exchange, the library's error on stderr.
_ETYPE_INFO = """\
import sys
import krb5
context = krb5.init_context()
try:
    krb5.get_etype_info(context, krb5.parse_name_flags(context, sys.argv[1].encode()))
except krb5.Krb5Error as e:
    sys.exit(f"{e.err_code} " + str(e).removesuffix(f" {e.err_code}"))
"""

_TRANSPORTS = {"stream": "tcp", "dgram": "udp", "https": "https"}
_TRIED = re.compile(r"(?:request|connection) to (stream|dgram|https) (\S+)$")
_ANSWERED = re.compile(r"Received answer \(\d+ bytes\) from (stream|dgram|https) (\S+)$")
_KDC_ERROR = re.compile(r"Received error from KDC: (-?\d+)/")
_TRACE_LINE = re.compile(r"^\[\d+\] [\d.]+: ", re.MULTILINE)  # "[pid] time: "

# What is kept of the child's output: a trace of a few KDCs is a few kilobytes.
MAX_OUTPUT = 256 * 1024


@dataclass(frozen=True)
class KdcProbe:
    """What the library did: which KDCs it tried and heard from, what they said."""

    realm: str
    principal: str
    backend: str = "krb5"  # the one that asked: "krb5" or "kinit"
    tried: tuple = ()  # ((address, transport), ...) in the order tried, once each
    answered: tuple = ()  # the ones of ``tried`` that sent an answer
    errors: tuple = ()  # the RFC 4120 error codes the KDCs answered with
    traced: bool = False  # False: the backend wrote no trace (not MIT Kerberos?)
    message: str = ""  # the library's own last word (kinit's or the bindings' error)
    timed_out: bool = False

    @property
    def known(self):
        """Whether the KDCs know ``principal``: True, False, or None with no answer."""
        if not self.answered:
            return None
        return CLIENT_NOT_FOUND not in self.errors and WRONG_REALM not in self.errors


def parse_trace(text):
    """``(tried, answered, errors, traced)`` of a libkrb5 trace (see :class:`KdcProbe`)."""
    tried, answered, errors = [], [], []
    for line in text.splitlines():
        line = line.strip()
        for pattern, found in ((_TRIED, tried), (_ANSWERED, answered)):
            match = pattern.search(line)
            if match:
                kdc = (match.group(2), _TRANSPORTS[match.group(1)])
                if kdc not in found:
                    found.append(kdc)
        match = _KDC_ERROR.search(line)
        if match:
            errors.append(int(match.group(1)) - KDC_ERROR_BASE)
    traced = bool(_TRACE_LINE.search(text))
    return tuple(tried), tuple(answered), tuple(errors), traced


def probe_kdc(
    realm, principal=None, *, backend="krb5", kinit_path="kinit", timeout=5.0, environ=None
):
    """Probe the KDCs of ``realm`` through ``backend`` ("krb5" or "kinit"); a :class:`KdcProbe`.

    ``principal`` (default ``krbtgt/REALM@REALM``) is the client the AS
    request names; ``environ`` (default ``os.environ``) gives ``KRB5_CONFIG``.
    Waits at most about ``timeout`` seconds. Raises OSError when the
    backend's program cannot be started.
    """
    principal = principal or f"krbtgt/{realm}@{realm}"
    if backend == "krb5":
        argv = [sys.executable, "-I", "-c", _ETYPE_INFO, principal]
    elif backend == "kinit":
        argv = [kinit_path, "--", principal]
    else:
        raise ValueError(f'backend must be "krb5" or "kinit", not {backend!r}')
    environ = os.environ if environ is None else environ
    with tempfile.NamedTemporaryFile("w", prefix="kerbauth-probe-", suffix=".conf") as profile:
        profile.write(PROBE_PROFILE)
        profile.flush()
        env = {
            "PATH": environ.get("PATH", os.defpath),
            "KRB5_CONFIG": ":".join([profile.name, *krb5_conf_paths(environ)]),
            "KRB5_TRACE": "/dev/stdout",
            "KRB5CCNAME": "MEMORY:kerbauth-probe",  # nothing is written anywhere
            "LC_ALL": "C",
        }
        timed_out = False
        try:
            done = subprocess.run(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
            out, err = done.stdout, done.stderr
        except subprocess.TimeoutExpired as e:  # run() killed the child
            out, err, timed_out = e.stdout or b"", e.stderr or b"", True
    text = out[:MAX_OUTPUT].decode("utf-8", "replace")
    tried, answered, errors, traced = parse_trace(text)
    lines = err[:MAX_OUTPUT].decode("utf-8", "replace").strip().splitlines()
    message = lines[-1] if lines else ""
    if backend == "krb5":
        # The bindings' child says "CODE MESSAGE"; a KDC's own error is one of the
        # first 128 codes of the library's table (RFC 4120's numbers).
        code, _, text = message.partition(" ")
        if code.lstrip("-").isdigit():
            message = text
            if 0 <= int(code) - KDC_ERROR_BASE < 128 and not errors:
                errors = (int(code) - KDC_ERROR_BASE,)
    return KdcProbe(realm, principal, backend, tried, answered, errors, traced, message, timed_out)


def why_unanswered(address, transport, timeout):
    """Why ``address`` ("host:port", "[v6]:port") gave no answer over ``transport``, in words."""
    try:
        kdc = parse_address(address, 0)
    except ValueError:
        kdc = None
    if transport not in ("tcp", "udp") or kdc is None or not kdc.port:
        return "no answer"
    kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
    try:
        family, kind, proto, _, where = socket.getaddrinfo(kdc.host, kdc.port, type=kind)[0]
        with socket.socket(family, kind, proto) as s:
            s.settimeout(timeout)
            s.connect(where)
            if transport == "tcp":
                return "accepts connections but gave no Kerberos answer"
            # An empty datagram: a closed port answers with ICMP (refused), a KDC ignores it.
            s.send(b"")
            s.recv(1)
    except TimeoutError:
        return "no answer in time"
    except ConnectionRefusedError:
        return "connection refused"
    except OSError as e:
        return e.strerror or str(e) or type(e).__name__
    return "no Kerberos answer"
