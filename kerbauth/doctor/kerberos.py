"""The checks of krb5.conf and the realm's KDCs.

krb5.conf is read by :mod:`kerbauth.core.realm` (the reader the hub falls
back on); the KDCs are asked through the configured ticket backend by
:mod:`kerbauth.core.kdc_probe`, so the library finds them as it would for a
ticket (krb5.conf, DNS, KDC proxies, every address of a host).
"""

import os
import stat
import time

from kerbauth.core import kdc_probe, tickets
from kerbauth.core import realm as krb5_realm
from kerbauth.core.names import InvalidUsername
from kerbauth.doctor.config import ticket_backend_name
from kerbauth.doctor.outcome import OK, PROBLEM, Skip

__all__ = ["check_krb5_conf", "check_kdc"]

_KDC_HINT = "start the KDC (krb5kdc), open the firewall to it, or fix kdc = in krb5.conf"


def check_krb5_conf(site):
    paths = krb5_realm.krb5_conf_paths()
    conf = krb5_realm.read_krb5_conf(paths)
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
    a = site.authenticator
    if site.facts.get("krb5_conf") is None or not a.realm:
        raise Skip("needs a readable krb5.conf and a realm")
    backend = ticket_backend_name(a)
    try:
        probe = kdc_probe.probe_kdc(
            a.realm, backend=backend, kinit_path=a.kinit_path, timeout=site.timeout
        )
    except OSError as e:
        return (
            PROBLEM,
            f"the {backend} backend cannot be run: {e}",
            "fix KerberosTickets.kinit_path" if backend == "kinit" else "",
        )
    if not probe.traced:
        raise Skip(
            f"the backend wrote no trace of its requests (not MIT Kerberos?): {probe.message}"
        )
    at = ", ".join(f"{address}/{transport}" for address, transport in probe.answered)
    if probe.answered and probe.known is False:
        return (
            PROBLEM,
            f"the KDC at {at} does not serve {a.realm} (it knows no {probe.principal})",
            "fix kdc = in krb5.conf, or the realm's DNS records, to name a KDC of the realm",
        )
    if not probe.tried:
        return (
            PROBLEM,
            f"no KDC of {a.realm} found: {probe.message}",
            f"add {a.realm} = {{ kdc = <host> }} under [realms] in krb5.conf, or DNS SRV"
            f" records _kerberos._tcp.{a.realm}",
        )
    silent = _unanswered(probe, site.timeout)
    if silent:
        # One KDC down of several: tickets still come, late; the line names it.
        also = f"; {at} answers" if at else ""
        return (PROBLEM, f"KDC of {a.realm} not answering: {silent}{also}", _KDC_HINT)
    principal = _password_principal(site)
    if principal is None:
        return (OK, f"KDC of {a.realm} answers at {at}", "")
    # Password tickets: no keytab to try, so ask the KDC whether it knows the user.
    user = kdc_probe.probe_kdc(
        a.realm, principal, backend=probe.backend, kinit_path=a.kinit_path, timeout=site.timeout
    )
    if user.known is False:
        return (
            PROBLEM,
            f"KDC of {a.realm} answers at {at}, but knows no {principal}",
            f"create it (kadmin: addprinc {principal}), or fix KerberosTickets.principal_template",
        )
    if user.known is None:
        return (PROBLEM, f"KDC of {a.realm} did not answer for {principal}: {user.message}", "")
    return (OK, f"KDC of {a.realm} answers at {at} and knows {principal}", "")


def _password_principal(site):
    """The principal of ``--user`` when tickets come from passwords, else None."""
    a = site.authenticator
    if site.username is None or not a.password_tickets:
        return None
    try:
        return tickets.build_principal(a.principal_template, site.username, a.realm)
    except InvalidUsername:
        return None  # the account line says what is wrong with the name


def _unanswered(probe, timeout):
    """``host:port (tcp: why; udp: why), ...`` of each KDC the library asked, never answered.

    Finding out why takes ``timeout`` at most, for all of them together.
    """
    deadline = time.monotonic() + timeout
    heard = {address for address, _ in probe.answered}
    reasons = {}
    for address, transport in probe.tried:
        if address not in heard:
            left = deadline - time.monotonic()
            why = kdc_probe.why_unanswered(address, transport, left) if left > 0.05 else "no answer"
            reasons.setdefault(address, []).append(f"{transport}: {why}")
    return ", ".join(f"{address} ({'; '.join(why)})" for address, why in reasons.items())
