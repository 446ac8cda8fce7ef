# --- under systemd (examples/systemd/jupyterhub.service; docs/systemd.md) --------------
# Lines to add at the end of the hub's jupyterhub_config.py (the PAM or LDAP example).
import os
from pathlib import Path

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

# The crypt key of auth_state (password tickets are kept there): systemd's
# LoadCredential= puts the file in $CREDENTIALS_DIRECTORY; without systemd (kerbauth
# doctor, a hub started by hand) it is read where it is kept. Set here, it is in no
# environment: neither the proxy nor a user's server inherits it. Several keys,
# ";"-separated, the new one first, rotate as JUPYTERHUB_CRYPT_KEY's do.
credentials = Path(os.environ.get("CREDENTIALS_DIRECTORY", "/etc/jupyterhub"))
crypt_keys = (credentials / "jupyterhub-crypt-key").read_text().split(";")
c.CryptKeeper.keys = [key.strip() for key in crypt_keys if key.strip()]
del crypt_keys

# The caches go where RuntimeDirectory=kerbauth is (/run/kerbauth).
c.KerberosTickets.ccache_dir = os.environ.get("RUNTIME_DIRECTORY", "/run/kerbauth")

# A hub stop or restart (KillMode=process) leaves the users' servers running; the
# restarted hub finds them in its database and renews their tickets again.
c.JupyterHub.cleanup_servers = False
