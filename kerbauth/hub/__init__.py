"""What runs in the hub: the ``KerberosTickets`` configuration and the ticket service.

The service obtains each user's ticket at spawn, delivers it (a cache file the
user owns, or the API the user's server fetches from), keeps it fresh while
the server runs, and counts what happened (metrics).
"""
