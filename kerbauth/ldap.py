"""LDAP bind login plus a Kerberos ticket at spawn (``kerberos-ldap``)."""

from jupyterhub.auth import Authenticator

from .kerberos_tickets import KerberosTickets

__all__ = ["KerberosLDAPAuthenticator"]


class KerberosLDAPAuthenticator(KerberosTickets, Authenticator):
    """Log in with an LDAP bind; each server gets the user's Kerberos ticket."""
