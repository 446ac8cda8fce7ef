"""kerbauth: JupyterHub authenticators that give every server a Kerberos ticket of its user."""

__version__ = "0.1.0.dev0"

from .kerberos_tickets import KerberosTickets  # noqa: E402
from .ldap import KerberosLDAPAuthenticator  # noqa: E402
from .pam import KerberosPAMAuthenticator  # noqa: E402

__all__ = [
    "KerberosTickets",
    "KerberosPAMAuthenticator",
    "KerberosLDAPAuthenticator",
    "__version__",
]
