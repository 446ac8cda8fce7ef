"""JupyterHub with kerbauth on a Hadoop edge node: PAM login, each server gets its user's ticket.

Users have local (or sssd) accounts and log in with their system password.
kerbauth checks it through the PAM service ``jupyterhub``, lets in members
of ``hub-users``, makes members of ``hub-admins`` admins, and at spawn gets
the user a ticket for ``<name>/pg-dmp-workbench2@<realm>`` from the keytab in
their home, written to a cache they own, with ``KRB5CCNAME`` set in their
server. ``spark-submit --master yarn`` in a notebook then runs as them.

The PAM service (``/etc/pam.d/jupyterhub``) is the site's to write; on
Debian, ``@include common-auth`` and ``@include common-account`` is the
usual content. Guide: docs/pam.md.

Site-specific values from the hub's environment (``/etc/default/jupyterhub``):

    JUPYTERHUB_PAM_SERVICE  the PAM service (default "jupyterhub")
    KERBEROS_REALM          the users' realm (default: default_realm of krb5.conf)

Check the deployment before starting the hub:
``kerbauth doctor -f jupyterhub_config.py --user alice``.
"""

import os

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

c.JupyterHub.authenticator_class = "kerberos-pam"

# --- the login -------------------------------------------------------------------------
pam = c.KerberosPAMAuthenticator
pam.service = os.environ.get("JUPYTERHUB_PAM_SERVICE", "jupyterhub")
pam.allowed_groups = {"hub-users"}
pam.admin_groups = {"hub-admins"}
# A PAM stack that waits on a directory or KDC is given up after 20 s.
pam.pam_timeout = 20

# --- the ticket ------------------------------------------------------------------------
tickets = c.KerberosTickets
if os.environ.get("KERBEROS_REALM"):
    tickets.realm = os.environ["KERBEROS_REALM"]
# One service principal per user for this edge node, its keytab in the user's home
# (owned by the user or root, mode 0600; kerbauth refuses anything looser).
tickets.principal_template = "{username}/pg-dmp-workbench2@{realm}"
tickets.keytab_template = "/home/{username}/{username}.wb1.keytab"
# Caches live in a root-owned directory (created 0711), one file per user, 0600.
tickets.ccache_dir = "/run/kerbauth"
# No keytab, no server: the user sees what to ask their administrator for.
tickets.required = True
