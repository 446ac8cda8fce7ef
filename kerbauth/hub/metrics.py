"""Prometheus metrics, served on the hub's own ``/metrics`` with JupyterHub's.

``kerbauth_tickets_expiring`` is computed when ``/metrics`` is read, from the
hub's records of the tickets it gave (:func:`watch_expiring`), so it is
current whether or not a renewal has run since.
"""

import time
import weakref

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "TICKET_REQUEST_SECONDS",
    "TICKET_FAILURES",
    "TICKETS_EXPIRING",
    "watch_expiring",
]

TICKET_REQUEST_SECONDS = Histogram(
    "kerbauth_ticket_request_duration_seconds",
    "Time to obtain and store one Kerberos ticket, by backend, purpose (spawn, renewal, login,"
    " fetch) and outcome (ok, or the failure's cause: keytab, kdc_unreachable, timeout, ...)",
    ["backend", "purpose", "outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

TICKET_FAILURES = Counter(
    "kerbauth_ticket_failures_total",
    "Ticket requests that failed, by cause (keytab, principal, kdc_unreachable, timeout, ...)",
    ["cause", "purpose"],
)

TICKETS_EXPIRING = Gauge(
    "kerbauth_tickets_expiring",
    "Servers whose ticket (as the hub gave it) ends within KerberosTickets.renew_margin",
)


def watch_expiring(tickets, clock=time.time):
    """Make ``kerbauth_tickets_expiring`` count ``tickets``' records when it is read.

    ``tickets`` is the :class:`~kerbauth.KerberosTickets` of the hub: its
    ``_issued`` (username -> TicketTimes of the ticket last given) and
    ``renew_margin``. Held weakly: a dropped instance counts nothing.
    """
    ref = weakref.ref(tickets)

    def expiring():
        owner = ref()
        if owner is None:
            return 0
        now, margin = clock(), owner.renew_margin
        return sum(1 for times in list(owner._issued.values()) if times.end - now <= margin)

    TICKETS_EXPIRING.set_function(expiring)
