"""What a check of ``kerbauth doctor`` can come to: a status, a line, a hint."""

from dataclasses import dataclass

__all__ = ["OK", "PROBLEM", "SKIP", "Result", "Skip", "NotApplicable", "describe_error"]

OK = "ok"
PROBLEM = "problem"
SKIP = "skip"  # does not apply here (no --user, PAM mode, ...); not a failure


class NotApplicable(Exception):
    """A check that has no meaning here (LDAP checks in PAM mode): no line at all."""


class Skip(Exception):
    """A check that does not apply, or whose prerequisite failed; the message says why."""


@dataclass(frozen=True)
class Result:
    name: str
    status: str
    message: str
    hint: str = ""


def describe_error(error):
    """A network error in a few words: "connection refused", "no answer in time", ..."""
    if isinstance(error, TimeoutError):
        return "no answer in time"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return getattr(error, "strerror", None) or str(error) or type(error).__name__
