"""JupyterHub with kerbauth: OpenLDAP login, and each server gets its user's Kerberos ticket.

Users log in with their directory password. kerbauth binds as
``uid=<name>,ou=people,<base>`` over StartTLS (certificate and host name
verified), lets in members of the ``hub-users`` group, makes members of
``hub-admins`` admins, and at spawn writes the user's ticket (from their
keytab) to a cache the user owns, with ``KRB5CCNAME`` set in the server.

The site-specific values come from the hub's environment, so the same file
serves a VM (``/etc/default/jupyterhub``) or zero-to-jupyterhub
(``hub.extraEnv``). Guide: docs/ldap.md.

    LDAP_SERVERS   servers tried in order, space-separated
                   (default "ldap1.corp.example ldap2.corp.example")
    LDAP_CA_FILE   CA of the servers' certificates (default /etc/ssl/certs/ca-certificates.crt)
    LDAP_BASE_DN   the directory's suffix (default "dc=corp,dc=example")
    KEYTAB_DIR     where <username>.keytab files live (default /etc/security/keytabs)
    KERBEROS_REALM the users' realm (default: default_realm of krb5.conf)

Check the deployment before starting the hub:
``kerbauth doctor -f jupyterhub_config.py --user alice``.
"""

import os

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

base_dn = os.environ.get("LDAP_BASE_DN", "dc=corp,dc=example")

c.JupyterHub.authenticator_class = "kerberos-ldap"

# --- the directory -------------------------------------------------------------------
ldap = c.KerberosLDAPAuthenticator
ldap.server_address = os.environ.get(
    "LDAP_SERVERS", "ldap1.corp.example ldap2.corp.example"
).split()
ldap.tls_strategy = "starttls"
ldap.tls_ca_file = os.environ.get("LDAP_CA_FILE", "/etc/ssl/certs/ca-certificates.crt")
# A server that does not answer is given up after 3 s and the next one asked.
ldap.connect_timeout = 3
ldap.receive_timeout = 3

# --- who the user is -----------------------------------------------------------------
# Bind straight to the user's entry; a second template covers a second branch.
ldap.bind_dn_template = [
    f"uid={{username}},ou=people,{base_dn}",
    f"uid={{username}},ou=staff,{base_dn}",
]

# --- who may log in, who is admin ----------------------------------------------------
ldap.group_search_base = f"ou=groups,{base_dn}"
ldap.allowed_groups = {"hub-users"}
ldap.admin_groups = {"hub-admins"}

# --- the ticket ----------------------------------------------------------------------
c.KerberosTickets.keytab_template = os.path.join(
    os.environ.get("KEYTAB_DIR", "/etc/security/keytabs"), "{username}.keytab"
)
if os.environ.get("KERBEROS_REALM"):
    c.KerberosTickets.realm = os.environ["KERBEROS_REALM"]
# The cache belongs to the uidNumber/gidNumber of the user's LDAP entry
# (posixAccount), which is what their server runs as.
ldap.owner_from_ldap = True
