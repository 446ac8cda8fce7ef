"""The two ways of asking the KDC: the ``kinit`` program and libkrb5 (pykrb5) workers.

Both run as the user the ticket is for and answer with the bytes of a FILE
cache; neither writes a file of its own. Both offer ``keytab_ticket``,
``password_ticket``, ``renew_ticket`` (``kinit -R`` or the library's
renewal), ``warm`` (start what the first request needs) and ``close``.

- :mod:`~kerbauth.core.backends.kinit`: one kinit process a request;
- :mod:`~kerbauth.core.backends.libkrb5`: the pool of krb5 workers, one uid each;
  :mod:`~kerbauth.core.backends.worker_processes`, the hub's side of a worker
  (start, talk, kill); :mod:`~kerbauth.core.backends.libkrb5_worker`, the
  worker program (and the root fork server);
- :mod:`~kerbauth.core.backends.children`: how a child is started (its
  environment, its uid, the keytab in a sealed memory file);
  :mod:`~kerbauth.core.backends.scratch`: the private directory it writes its
  cache in.

Failure causes are found in one place, :mod:`kerbauth.core.errors`.
"""
