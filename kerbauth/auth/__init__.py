"""The login modes: PAM and LDAP, each an Authenticator that is also ``KerberosTickets``."""
