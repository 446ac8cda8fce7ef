"""Checking usernames before they reach a path, a principal, a DN or a filter.

A username arrives from a login form. Before kerbauth puts it into a file name
(the keytab and the cache), a Kerberos principal or an argv, it must be a
plain account name: nothing that changes the meaning of the string it is put
into. The rule is an allow-list, so that characters nobody thought of are
refused too.
"""

import re

__all__ = ["InvalidUsername", "check_username", "log_safe", "printable"]

# Letters, digits, ".", "_" and "-"; it may not start with "." or "-" (a
# leading "-" would read as an option to kinit, a leading "." as a hidden or
# relative path component). 128 characters is far above any account name in
# use (Linux allows 32, Active Directory's sAMAccountName 20).
_USERNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


class InvalidUsername(ValueError):
    """A username that may not be used in a path, a principal or a filter."""


def log_safe(name, limit=16):
    """A username as it may appear in a log line: short and printable.

    A hostile username can be long or carry control characters that forge
    log lines; this keeps the first ``limit`` characters, escapes the rest and
    says how long the original was.
    """
    text = str(name)
    shown = text[:limit].encode("unicode_escape").decode("ascii")
    if len(text) > limit:
        return f"{shown}...({len(text)} chars)"
    return shown


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text):
    """``text`` with control characters escaped (``\\n``, ``\\x1b``, ...), for a log line.

    For text that came from data users control (a principal or realm read
    from a cache, a library's message about it): a newline in it must not
    start a forged log line.
    """
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def check_username(name):
    """Return ``name`` if it is safe to build paths and principals from.

    Raises :class:`InvalidUsername` with the reason otherwise. ``/``, ``@``,
    ``\\``, ``..``, NUL, control characters, whitespace and anything outside
    ``[A-Za-z0-9._-]`` are refused.
    """
    if not isinstance(name, str) or not name:
        raise InvalidUsername("empty username")
    if ".." in name:
        raise InvalidUsername(f"username {log_safe(name)!r} contains '..'")
    if not _USERNAME.fullmatch(name):
        raise InvalidUsername(
            f"username {log_safe(name)!r} may contain only letters, digits, '.', '_' and '-',"
            " may not start with '.' or '-', and is at most 128 characters long"
        )
    return name
