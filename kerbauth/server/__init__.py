"""What runs in the user's server: the ``fetch`` delivery's client.

Enabled as the jupyter_server extension ``kerbauth.server``
(:mod:`~kerbauth.server.extension`); the ``kerbauth-fetch`` command
(:mod:`~kerbauth.server.fetch`) does the same outside a Jupyter server. Both
run the keeper (:mod:`~kerbauth.server.keeper`), which asks the hub for the
ticket (:mod:`~kerbauth.server.hub_client`) and writes it where
``KRB5CCNAME`` says once that place is checked to be the server's own
(:mod:`~kerbauth.server.cache_target`). They load only the ticket core and
the standard library, never JupyterHub, traitlets, tornado, sqlalchemy, PAM
or LDAP code.
"""

from kerbauth.server.extension import (
    _jupyter_server_extension_points,
    _load_jupyter_server_extension,
)

__all__ = ["_jupyter_server_extension_points", "_load_jupyter_server_extension"]
