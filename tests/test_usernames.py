import pytest

from kerbauth.core.names import InvalidUsername, check_username, log_safe

HOSTILE = [
    "",
    "..",
    "../../etc/shadow",
    "a..b",
    "alice/admin",
    "alice@EVIL.REALM",
    "CORP\\alice",
    "alice\x00",
    "alice\nINFO forged log line",
    "al ice",
    "alice\t",
    "-c/tmp/x",
    ".hidden",
    "*",
    "*)(uid=*",
    "admin)(|(uid=*",
    "a,b",
    'a"b',
    "a+b",
    "a;b",
    "a=b",
    "a<b>",
    "jürgen",
    "x" * 129,
]


@pytest.mark.parametrize("name", HOSTILE, ids=repr)
def test_hostile_usernames_are_refused(name):
    with pytest.raises(InvalidUsername):
        check_username(name)


@pytest.mark.parametrize("name", ["alice", "first.last", "user_1", "a-b", "A1", "x" * 128, "_svc"])
def test_plain_usernames_pass(name):
    assert check_username(name) == name


def test_non_string_is_refused():
    with pytest.raises(InvalidUsername):
        check_username(None)


def test_log_safe_truncates_and_escapes():
    assert log_safe("alice") == "alice"
    shown = log_safe("a\nb" + "x" * 40)
    assert "\n" not in shown
    assert shown.endswith("...(43 chars)")
    assert shown.startswith("a\\nb")


def test_ticket_errors_escape_what_users_control():
    """A realm or principal read from a user's file, or a library's message about it,
    cannot start a forged log line (issue 11, item 6)."""
    from kerbauth.core.errors import TicketError

    error = TicketError("other", "cache holds alice@EVIL\n[I 2026-12-01 JupyterHub] forged\x1b[2K")
    assert "\n" not in str(error) and "\x1b" not in str(error)
    assert "alice@EVIL\\n[I 2026-12-01 JupyterHub] forged\\x1b[2K" in str(error)
