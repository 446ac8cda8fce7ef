"""Prometheus metrics, served on the hub's own ``/metrics`` with JupyterHub's."""

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["TICKET_REQUEST_SECONDS", "TICKET_FAILURES", "TICKETS_EXPIRING"]

TICKET_REQUEST_SECONDS = Histogram(
    "kerbauth_ticket_request_duration_seconds",
    "Time to obtain and store one Kerberos ticket, by backend and purpose (spawn, renewal)",
    ["backend", "purpose"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

TICKET_FAILURES = Counter(
    "kerbauth_ticket_failures_total",
    "Ticket requests that failed, by cause (keytab, principal, kdc_unreachable, timeout, ...)",
    ["cause", "purpose"],
)

TICKETS_EXPIRING = Gauge(
    "kerbauth_tickets_expiring",
    "Running servers whose ticket ends within KerberosTickets.renew_margin (or is unreadable)",
)
