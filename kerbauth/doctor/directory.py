"""The LDAP checks: servers reachable, TLS verified, the service bind, the user's entry.

They build the connection settings exactly as the LDAP authenticator does
and go through the same LDAP module, with the doctor's ``--timeout``.
"""

import dataclasses
import logging
import socket

from kerbauth.auth.ldap import directory as ldap_directory
from kerbauth.doctor.outcome import OK, PROBLEM, NotApplicable, Skip, describe_error

__all__ = ["check_ldap_servers", "check_ldap_tls", "check_ldap_bind", "check_ldap_lookup"]


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
            failed.append(f"{server} ({describe_error(e)})")
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
    anonymous = dataclasses.replace(
        query, search_bind_dn="", search_bind_password="", search_bind_kerberos=None
    )
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
    account = query.search_bind_dn or str(query.search_bind_kerberos or "")
    if not account:
        raise Skip("no KerberosLDAPAuthenticator.search_bind_dn: searches are anonymous")
    server = _usable_servers(site, directory)[0]
    try:
        _lookup(site, directory, query, PROBE_USER, [server])
    except ldap_directory.DirectoryError as e:
        return (
            PROBLEM,
            f"{server}: {e}",
            "check KerberosLDAPAuthenticator.search_bind_principal and search_bind_keytab"
            if query.search_bind_kerberos
            else "check KerberosLDAPAuthenticator.search_bind_dn and search_bind_password",
        )
    site.facts["ldap_bind"] = True
    return (OK, f"bound as {account} on {server}", "")


def check_ldap_lookup(site):
    directory, query = _ldap(site)
    if site.username is None:
        raise Skip("give --user NAME to look the user up")
    if not (query.search_bind_dn or query.search_bind_kerberos):
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
