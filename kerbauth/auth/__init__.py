"""The login modes: PAM and LDAP, each an Authenticator that is also ``KerberosTickets``.

- :mod:`.pam`: ``kerberos-pam``;
- :mod:`.ldap`: ``kerberos-ldap`` (a package: one module per concern);
- :mod:`.limiter`: the login limiter, plain asyncio, and :mod:`.limits`: its
  options, mixed into both authenticators.
"""
