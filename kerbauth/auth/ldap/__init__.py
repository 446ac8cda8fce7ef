"""LDAP login (``kerberos-ldap``), one concern a module.

- :mod:`.authenticator`: :class:`KerberosLDAPAuthenticator`, the thin layer JupyterHub calls;
- :mod:`.options`: its options, and :mod:`.settings`: the rules between them and
  the plain settings they make;
- :mod:`.connection`: reaching the directory (the deadline socket, the byte cap,
  StartTLS/LDAPS, failover between servers);
- :mod:`.queries`: the name asked about, and the DNs and filters built from it;
- :mod:`.directory`: the questions a login asks (bind, search, read the entry);
- :mod:`.groups`: group membership and what it allows.

Only :mod:`.authenticator` and :mod:`.options` load JupyterHub or traitlets.
"""
