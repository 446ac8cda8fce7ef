"""core.address: the one reader of ``host[:port]`` (LDAP servers, KDC addresses)."""

import pytest

from kerbauth.core.address import Address, parse_address

# (label, text, default port, the address)
GOOD = [
    ("name", "ldap.corp.example", 389, Address("ldap.corp.example", 389)),
    ("name and port", "ldap.corp.example:1389", 389, Address("ldap.corp.example", 1389)),
    ("spaces around", "  kdc.corp.example:88 ", 0, Address("kdc.corp.example", 88)),
    ("IPv4", "127.0.0.1:636", 389, Address("127.0.0.1", 636)),
    ("bracketed IPv6 with port", "[::1]:636", 389, Address("::1", 636)),
    ("bracketed IPv6", "[fd00::5]", 88, Address("fd00::5", 88)),
    ("bare IPv6 takes the default", "fd00::5", 88, Address("fd00::5", 88)),
]

# (label, text, the message)
BAD = [
    ("empty", "   ", "'   ' is not a host name or host:port"),
    ("URL", "ldaps://ldap.corp.example", "'ldaps://ldap.corp.example' is not a host name"),
    ("path", "ldap.corp.example/x", "'ldap.corp.example/x' is not a host name"),
    ("space inside", "ldap corp", "'ldap corp' is not a host name"),
    ("no host", ":389", "':389' has no host"),
    ("port zero", "ldap:0", "'ldap:0' has an invalid port"),
    ("port too big", "ldap:65536", "'ldap:65536' has an invalid port"),
    ("port not a number", "ldap:ldaps", "'ldap:ldaps' has an invalid port"),
    ("junk after the bracket", "[::1]x", "'[::1]x' is not [address]:port"),
]


@pytest.mark.parametrize("text,default,expected", [c[1:] for c in GOOD], ids=[c[0] for c in GOOD])
def test_addresses_are_read(text, default, expected):
    assert parse_address(text, default) == expected


@pytest.mark.parametrize("text,message", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_what_is_no_address_is_refused_quoting_it(text, message):
    with pytest.raises(ValueError) as refused:
        parse_address(text, 389)
    assert str(refused.value).startswith(message)


def test_an_address_prints_as_it_is_written():
    assert [str(Address("ldap.corp.example", 389)), str(Address("::1", 636))] == [
        "ldap.corp.example:389",
        "[::1]:636",
    ]
