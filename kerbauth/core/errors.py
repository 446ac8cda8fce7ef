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
    "cause_from_code",
    "cause_from_message",
    "keytab_refused",
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
    "expired": " (the ticket from your login can no longer be renewed: log out and log in again)",
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


# How a failed request is told its cause: by the library's error code (the
# krb5 worker: pykrb5's ``Krb5Error.err_code``), or by kinit's message, which
# kinit writes in the C locale (it runs under ``LC_ALL=C``, see
# kerbauth.core.backends.children.child_environment), so its words are
# the same on every host.

# MIT krb5 error codes (krb5.h, the com_err table "krb5") and the cause each means.
_CODE_CAUSES = {
    -1765328378: "principal",  # KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN
    -1765328203: "principal",  # KRB5_KT_NOTFOUND: no key of the principal in the keytab
    -1765328154: "principal",  # KRB5_KT_KVNONOTFOUND
    -1765328228: "kdc_unreachable",  # KRB5_KDC_UNREACH
    -1765328230: "kdc_unreachable",  # KRB5_REALM_UNKNOWN: no KDC known for the realm
    -1765328164: "kdc_unreachable",  # KRB5_REALM_CANT_RESOLVE
    -1765328347: "clock_skew",  # KRB5KRB_AP_ERR_SKEW
    -1765328236: "clock_skew",  # KRB5_KDCREP_SKEW
    -1765328360: "password",  # KRB5KDC_ERR_PREAUTH_FAILED
    -1765328174: "password",  # KRB5_PREAUTH_FAILED
    -1765328353: "password",  # KRB5KRB_AP_ERR_BAD_INTEGRITY
    -1765328352: "expired",  # KRB5KRB_AP_ERR_TKT_EXPIRED
    -1765328205: "keytab",  # KRB5_KT_BADNAME
    -1765328200: "keytab",  # KRB5_KT_IOERR
    -1765328149: "keytab",  # KRB5_KT_FORMAT
    -1765328249: "config",  # KRB5_CONFIG_CANTOPEN
    -1765328160: "config",  # KRB5_CONFIG_NODEFREALM
}
# KRB5KDC_ERR_BADOPTION: asked to renew, the KDC's "cannot fulfill the option"
# means the ticket is not renewable (or no longer): the user must log in again.
_BADOPTION = -1765328371


def cause_from_code(code, renewing=False):
    """The cause (one of :data:`CAUSES`) of the MIT krb5 error ``code``."""
    if renewing and code == _BADOPTION:
        return "expired"
    return _CODE_CAUSES.get(code, "other")


# Substrings of kinit's messages in the C locale (MIT, and Heimdal's for
# keytabs) and the cause each means. First match wins.
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
    ("can't fulfill requested option while renewing", "expired"),
    ("preauthentication failed", "password"),
    ("decrypt integrity check failed", "password"),
    ("cannot read realm", "config"),
    ("configuration file does not specify default realm", "config"),
    ("while initializing kerberos 5 library", "config"),  # krb5.conf unreadable for that uid
)


def cause_from_message(message):
    """The cause (one of :data:`CAUSES`) that a kinit message in the C locale names."""
    lowered = message.lower()
    for needle, cause in _MESSAGE_CAUSES:
        if needle in lowered:
            return cause
    return "other"


def keytab_refused(keytab, error):
    """``error`` of a keytab request, as what it means with a keytab.

    "Wrong password" from a keytab means its key is not the principal's current
    one (a password change or a new key version): a "keytab" error naming the file.
    """
    if error.cause != "password":
        return error
    return TicketError(
        "keytab", f"keytab {keytab} holds a key the KDC does not accept (stale?): {error.detail}"
    )


class ConfigError(ValueError):
    """A setting kerbauth refuses at start-up; the message names the full option and the fix."""
