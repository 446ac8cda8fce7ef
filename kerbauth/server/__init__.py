"""What runs in the user's server: the ``kerbauth-fetch`` client and the server extension.

Enabled as the jupyter_server extension ``kerbauth.server``; it loads only
the ticket core, never JupyterHub's database layer, PAM or LDAP code.
"""

from kerbauth.server.extension import (
    _jupyter_server_extension_points,
    _load_jupyter_server_extension,
)

__all__ = ["_jupyter_server_extension_points", "_load_jupyter_server_extension"]
