"""What an Active Directory bind refusal says about the account, told to the user.

AD refuses a simple bind with ``invalidCredentials`` (49) and a diagnostic
message such as ``80090308: LdapErr: DSID-0C0903A9, comment:
AcceptSecurityContext error, data 532, v1db1``; the hexadecimal after
``data`` is the Windows error that says why. :func:`account_refusal` reads it.

Which codes reach the user: AD (as tested against Samba's AD DC) sends
532, 773, 533, 701, 530 and 531 only when the password was right; a wrong
password gets ``data 52e`` whatever the state of the account, and so does a
name with no account. Telling the user those states reveals nothing to
someone who does not know the password. ``775`` (locked out) is the
exception: the lock is checked before the password, so a locked account
answers 775 to any password. kerbauth shows it anyway: AD tells anyone
the same over every other protocol (a Windows logon, SMB, Kerberos), so
hiding it here would protect nothing, and the locked-out user learns why
their right password fails. What it reveals is that the name is an account
that is locked now. Any other code (52e, 525 no such user, ...) is a plain
"invalid username or password".
"""

import re

from kerbauth.auth.ldap.connection import DirectoryError

__all__ = ["AccountRefused", "MESSAGES", "account_refusal"]

_INVALID_CREDENTIALS = 49
_DATA = re.compile(r"AcceptSecurityContext error, data ([0-9a-fA-F]{1,8})\b")

# Windows error (as AD writes it after "data") -> (what the log says, what the user reads).
MESSAGES = {
    "532": (
        "password expired",
        "Your password has expired: set a new one (at a Windows login or your"
        " organisation's password page), then log in again.",
    ),
    "773": (
        "password must be changed at next logon",
        "You must change your password before you can log in: set a new one (at a"
        " Windows login or your organisation's password page), then log in again.",
    ),
    "775": (
        "account locked out",
        "Your account is locked after too many failed logins: wait for it to unlock,"
        " or ask your administrator to unlock it.",
    ),
    "533": (
        "account disabled",
        "Your account is disabled: contact your administrator.",
    ),
    "701": (
        "account expired",
        "Your account has expired: contact your administrator.",
    ),
    "530": (
        "outside the account's logon hours",
        "Your account may not log in at this time: try again within your permitted"
        " logon hours, or contact your administrator.",
    ),
    "531": (
        "not one of the account's workstations",
        "Your account may log in only from certain computers, and this service is not"
        " one of them: contact your administrator.",
    ),
}


class AccountRefused(DirectoryError):
    """AD refused the bind for a reason in :data:`MESSAGES`; the user is told it.

    A :class:`DirectoryError`, so failover stops: the directory has answered.
    ``message`` is for the login form, ``code`` and ``meaning`` for the log.
    """

    def __init__(self, dn, code):
        self.dn = dn
        self.code = code
        self.meaning, self.message = MESSAGES[code]
        super().__init__(f"Active Directory refused {dn}: data {self.code} ({self.meaning})")


def account_refusal(result, dn):
    """The :class:`AccountRefused` that ldap3's ``result`` of a refused bind of ``dn``
    stands for; None when it is any other refusal (a wrong password among them)."""
    if not result or result.get("result") != _INVALID_CREDENTIALS:
        return None
    found = _DATA.search(result.get("message") or "")
    if found is None:
        return None
    code = found.group(1).lower().lstrip("0")
    return AccountRefused(dn, code) if code in MESSAGES else None
