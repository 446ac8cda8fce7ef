# --- under systemd (examples/systemd/jupyterhub.service; docs/systemd.md) --------------
# Lines to add at the end of the hub's jupyterhub_config.py (the PAM or LDAP example).
import os  # noqa: E402 - already imported by the examples; harmless again
from pathlib import Path  # noqa: E402

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

# The crypt key of auth_state (password tickets are kept there), from the file that
# LoadCredential=jupyterhub-crypt-key:... gives the hub in $CREDENTIALS_DIRECTORY.
# Set here, it never is an environment variable: neither the proxy nor a user's
# server inherits it. Several keys, ";"-separated, rotate as JUPYTERHUB_CRYPT_KEY's do.
if os.environ.get("CREDENTIALS_DIRECTORY"):
    crypt_key = Path(os.environ["CREDENTIALS_DIRECTORY"], "jupyterhub-crypt-key").read_text()
    c.CryptKeeper.keys = [key.strip() for key in crypt_key.split(";") if key.strip()]
    del crypt_key

# The caches go where RuntimeDirectory=kerbauth is (/run/kerbauth).
c.KerberosTickets.ccache_dir = os.environ.get("RUNTIME_DIRECTORY", "/run/kerbauth")

# A hub stop or restart (KillMode=process) leaves the users' servers running; the
# restarted hub finds them in its database and renews their tickets again.
c.JupyterHub.cleanup_servers = False
