"""PAM login plus a Kerberos ticket at spawn (``kerberos-pam``)."""

from jupyterhub.auth import PAMAuthenticator

from .kerberos_tickets import KerberosTickets

__all__ = ["KerberosPAMAuthenticator"]


class KerberosPAMAuthenticator(KerberosTickets, PAMAuthenticator):
    """Log in with the system password through PAM; each server gets the user's Kerberos ticket."""
