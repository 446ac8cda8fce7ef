"""The two ways of asking the KDC: the ``kinit`` program and libkrb5 (pykrb5) workers.

Both run as the user the ticket is for (:mod:`kerbauth.core.backends.children`)
and answer with the bytes of a FILE cache; neither writes a file of its own.
"""
