"""The lines a hub behind nginx (examples/nginx/jupyterhub.conf) adds to its jupyterhub_config.py.

Append them to the edge node's configuration (examples/pam or examples/ldap).
Guide: docs/nginx.md.
"""

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

# The hub's proxy on loopback only: nginx, on this host, is the one way in.
c.JupyterHub.bind_url = "http://127.0.0.1:8000"

# nginx adds the client's address to X-Forwarded-For, and the hub's proxy adds
# nginx's (127.0.0.1). The client is the last address not listed here: kerbauth's
# login limits count failed logins against it, not against nginx.
c.JupyterHub.trusted_downstream_ips = ["127.0.0.1"]

# No c.JupyterHub.public_url: set to one name, it would send every login and every
# notebook's OAuth redirect to that name, and users of the other name would fail
# between the two. Left unset, each request is answered on the name it came to.
