"""LDAP login: the authenticator (``kerberos-ldap``) and its directory client."""
