"""Exceptions of the ticket core.

Each carries a short ``cause`` (a word the hub can count and a test can check)
and the underlying error text, so the log can name what went wrong while the
user sees only :data:`USER_MESSAGE`.
"""

from kerbauth.core.names import printable

__all__ = [
    "USER_MESSAGE",
    "TicketError",
    "KeytabError",
    "CcacheError",
    "ConfigError",
]

USER_MESSAGE = (
    "No Kerberos ticket could be obtained for you, so your server was not started{hint}. "
    "Please contact your administrator."
)

# What the user is told about each cause, in words they can act on or pass on.
_USER_HINTS = {
    "keytab": " (there is no usable keytab for your account)",
    "principal": " (your Kerberos principal is unknown to the Kerberos server or your keytab)",
    "kdc_unreachable": " (the Kerberos server did not answer; trying again later may work)",
    "timeout": " (the Kerberos server did not answer in time; trying again later may work)",
    "clock_skew": " (the clocks of this hub and the Kerberos server disagree)",
    "shared": (
        " (your server is shared with other users, and shared servers get no Kerberos"
        " ticket here: revoke the shares to start it with one)"
    ),
}

# The causes a TicketError can carry.
CAUSES = (
    "keytab",  # keytab missing, unsafe or unreadable
    "principal",  # principal unknown to the KDC or not in the keytab
    "kdc_unreachable",  # no KDC answered
    "clock_skew",  # the KDC and this host disagree on the time
    "timeout",  # the request took longer than the configured timeout
    "password",  # wrong password (password-derived tickets)
    "expired",  # the ticket can no longer be renewed: the user must log in again
    "ccache",  # the cache could not be written
    "config",  # krb5.conf or kerbauth configuration
    "shared",  # the server is shared and tickets_for_shared_servers is off
    "other",
)


class TicketError(Exception):
    """A ticket could not be obtained or stored.

    ``cause`` is one of :data:`CAUSES`; ``str(error)`` is the full cause for
    the log (never for the user).
    """

    def __init__(self, cause, detail):
        if cause not in CAUSES:
            raise ValueError(f"unknown cause {cause!r}")
        self.cause = cause
        # Details quote principals, realms and library messages about files
        # users control: escaped here, so no log line can be forged through them.
        self.detail = printable(detail)
        super().__init__(f"{cause}: {self.detail}")

    @property
    def jupyterhub_message(self):
        """What JupyterHub shows the user instead of ``str(self)``."""
        return USER_MESSAGE.format(hint=_USER_HINTS.get(self.cause, ""))


class KeytabError(TicketError):
    """The keytab is missing or not safe to use; the message names the file."""

    def __init__(self, path, reason):
        self.path = path
        self.reason = reason
        super().__init__("keytab", f"keytab {path}: {reason}")


class CcacheError(TicketError):
    """The ticket cache or its directory is not safe to use or could not be written."""

    def __init__(self, detail):
        super().__init__("ccache", detail)


# Substrings of MIT and Heimdal error messages (from kinit's stderr or the
# library's error text) and the cause they mean. First match wins.
_MESSAGE_CAUSES = (
    ("cannot contact any kdc", "kdc_unreachable"),
    ("cannot find kdc", "kdc_unreachable"),
    ("unable to reach any kdc", "kdc_unreachable"),
    ("clock skew too great", "clock_skew"),
    ("not found in kerberos database", "principal"),
    ("keytab contains no suitable keys", "principal"),
    ("no key table entry found", "principal"),
    ("key table entry not found", "principal"),
    ("no such entry in the keytab", "principal"),
    ("key table file", "keytab"),
    ("bad key table", "keytab"),
    ("password incorrect", "password"),
    ("ticket expired", "expired"),
    ("ticket not eligible for renewal", "expired"),
    ("not renewable", "expired"),
    ("preauthentication failed", "password"),
    ("decrypt integrity check failed", "password"),
    ("cannot read realm", "config"),
    ("configuration file does not specify default realm", "config"),
)


def cause_from_message(message):
    """The cause (one of :data:`CAUSES`) that a Kerberos error message names."""
    lowered = message.lower()
    for needle, cause in _MESSAGE_CAUSES:
        if needle in lowered:
            return cause
    return "other"


class ConfigError(ValueError):
    """A setting kerbauth refuses at start-up; the message names the full option and the fix."""
