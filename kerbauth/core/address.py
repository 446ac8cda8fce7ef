"""Network addresses as configuration writes them: ``host``, ``host:port``, ``[v6]:port``.

The one reader of such addresses: LDAP's ``server_address`` entries and the
``kdc =`` values of krb5.conf are both read with :func:`parse_address`.
"""

from dataclasses import dataclass

__all__ = ["Address", "parse_address"]


@dataclass(frozen=True)
class Address:
    """A host (name or address) and a TCP/UDP port."""

    host: str
    port: int

    def __str__(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_address(text, default_port):
    """The :class:`Address` that ``"host"``, ``"host:port"`` or ``"[v6 address]:port"`` names.

    ``default_port`` is used when the text names none (also for a bare IPv6
    address, which has more than one colon). Raises ValueError, quoting
    ``text``, for a URL, a path, spaces, an empty host or a port that is not
    a number from 1 to 65535.
    """
    entry = text.strip()
    if not entry or "://" in entry or "/" in entry or any(c.isspace() for c in entry):
        raise ValueError(f"{text!r} is not a host name or host:port")
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r} is not [address]:port")
        port = rest[1:]
    elif entry.count(":") == 1:
        host, _, port = entry.partition(":")
    else:
        host, port = entry, ""
    if not host:
        raise ValueError(f"{text!r} has no host")
    if not port:
        return Address(host, default_port)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} has an invalid port")
    return Address(host, int(port))
