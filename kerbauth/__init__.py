"""kerbauth: JupyterHub authenticators that give every server a Kerberos ticket of its user."""

__version__ = "0.1.0.dev0"

# Imported when first used, not with the package. The package holds three
# programs (see docs/architecture.md): the hub (kerbauth.hub, kerbauth.auth), the
# user's server (kerbauth.server) and the admin's ``kerbauth doctor``; each loads
# only its own part. The krb5 worker (kerbauth.core.backends.libkrb5_worker)
# starts for each uid it serves and needs none of JupyterHub.
_EXPORTS = {
    "KerberosTickets": "hub.tickets",
    "KerberosLDAPAuthenticator": "auth.ldap.authenticator",
    "KerberosPAMAuthenticator": "auth.pam",
    "KerberosKDCAuthenticator": "auth.kdc",
    "KerberosSPNEGO": "auth.spnego",
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
    "KerberosKDCAuthenticator",
    "KerberosSPNEGO",
    "__version__",
]
