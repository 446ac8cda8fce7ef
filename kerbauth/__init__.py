"""kerbauth: JupyterHub authenticators that give every server a Kerberos ticket of its user."""

__version__ = "0.1.0.dev0"

# Imported when first used, not with the package: the krb5 worker
# (``python -m kerbauth.krb5_worker``) starts for each uid it serves and needs
# none of JupyterHub (0.1 s to start instead of 1 s).
_EXPORTS = {
    "KerberosTickets": "kerberos_tickets",
    "KerberosLDAPAuthenticator": "ldap",
    "KerberosPAMAuthenticator": "pam",
}


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "KerberosTickets",
    "KerberosPAMAuthenticator",
    "KerberosLDAPAuthenticator",
    "__version__",
]
