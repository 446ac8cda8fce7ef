"""The ticket core: names, realm, keytabs, caches, the due rule and the backends.

Plain functions and classes on the standard library (plus pykrb5 in the
``krb5`` backend's worker): no traitlets, tornado or JupyterHub, so the hub, the
user's server and ``kerbauth doctor`` share it and a test can call it directly.
"""
