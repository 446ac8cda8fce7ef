"""What runs in the hub: the ``KerberosTickets`` configuration and the ticket service.

The service obtains each user's ticket at spawn, delivers it (a cache file the
user owns, or the API the user's server fetches from), keeps it fresh while
the server runs, and counts what happened (metrics). One module a concern:

- ``tickets``: :class:`KerberosTickets`, its options and the rules between them;
- ``service``: obtaining and storing tickets, the hub's records, start-up;
- ``password_tickets``: tickets from the login password, ``refresh_user``;
- ``delivery``: the ``file`` and ``fetch`` deliveries, as strategies;
- ``spawn_policy``: ``pre_spawn_start``/``post_spawn_stop``, shared servers;
- ``renewal`` (the plain asyncio renewer) and ``renewal_targets`` (the hub's
  running servers as its targets);
- ``api`` (the fetch delivery's handler), ``refusal`` (a refused spawn as
  JupyterHub shows it), ``metrics``.
"""
