"""JupyterHub with kerbauth: Active Directory login, and each server gets its user's ticket.

Users log in as ``alice``, ``alice@corp.example`` or ``CORP\\alice``. kerbauth
binds as a service account over LDAPS (certificate and host name verified),
finds the enabled user whose sAMAccountName matches, binds as that user with
their password, and reads their groups, nested groups included. Without
per-user keytabs (usual with AD), the ticket comes from the password typed at
login: kept encrypted in auth_state, written to the user's cache at spawn,
renewed by the hub. Guide: docs/active-directory.md.

Site-specific values come from the hub's environment (in zero-to-jupyterhub:
``hub.extraEnv``, the password from a Secret):

    AD_SERVERS         domain controllers tried in order, space-separated
                       (default "dc1.corp.example dc2.corp.example")
    AD_CA_FILE         CA of the controllers' certificates
                       (default /etc/ssl/certs/ca-certificates.crt)
    AD_BASE_DN         default "DC=corp,DC=example"
    AD_BIND_DN         the service account's DN
    AD_BIND_PASSWORD   its password (never put it in this file)
    AD_DOMAINS         what users may type before \\ or after @
                       (default "CORP corp.example")
    JUPYTERHUB_CRYPT_KEY  encrypts auth_state (``openssl rand -hex 32``)

Needs ``pip install kerbauth[krb5]`` (password tickets use the krb5 backend).
"""

import os

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

base_dn = os.environ.get("AD_BASE_DN", "DC=corp,DC=example")

c.JupyterHub.authenticator_class = "kerberos-ldap"

# --- the domain controllers ------------------------------------------------------------
ldap = c.KerberosLDAPAuthenticator
ldap.server_address = os.environ.get("AD_SERVERS", "dc1.corp.example dc2.corp.example").split()
ldap.tls_strategy = "ldaps"
ldap.tls_ca_file = os.environ.get("AD_CA_FILE", "/etc/ssl/certs/ca-certificates.crt")
ldap.connect_timeout = 3
ldap.receive_timeout = 5

# --- who the user is -------------------------------------------------------------------
# AD DNs hold the display name (CN=Alice Smith,...): search for the account instead.
ldap.lookup_dn = True
ldap.user_search_base = base_dn
ldap.user_attribute = "sAMAccountName"
# Enabled user accounts only (bit 2 of userAccountControl marks a disabled one).
ldap.user_search_filter = (
    "(&(objectCategory=person)(objectClass=user)({user_attribute}={username})"
    "(!(userAccountControl:1.2.840.113556.1.4.803:=2)))"
)
ldap.search_bind_dn = os.environ.get(
    "AD_BIND_DN", "CN=svc-jupyterhub,OU=Service Accounts,DC=corp,DC=example"
)
ldap.search_bind_password = os.environ.get("AD_BIND_PASSWORD", "")
ldap.login_domains = os.environ.get("AD_DOMAINS", "CORP corp.example").split()

# --- who may log in, who is admin --------------------------------------------------------
ldap.group_search_base = base_dn
# Groups the user is in, directly or through other groups (LDAP_MATCHING_RULE_IN_CHAIN).
ldap.group_search_filter = "(&(objectClass=group)(member:1.2.840.113556.1.4.1941:={user_dn}))"
ldap.group_name_attribute = "sAMAccountName"
ldap.allowed_groups = {"JupyterHub-Users"}
ldap.admin_groups = {"JupyterHub-Admins"}
# Mirror them as JupyterHub groups (for sharing and roles).
c.Authenticator.manage_groups = True
ldap.auth_state_attributes = ["mail", "displayName"]

# --- the ticket, from the login password --------------------------------------------------
c.Authenticator.enable_auth_state = True
c.KerberosTickets.password_tickets = True
c.KerberosTickets.realm = os.environ.get("KERBEROS_REALM", "CORP.EXAMPLE")
