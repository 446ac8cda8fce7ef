"""Forging what a user can write into their own ticket cache: times, sizes, principals.

A user owns their cache file and can put anything in it. These helpers make
such files the way an attacker would, from a real cache's bytes.
"""

import struct


def _skip_principal(data, pos):
    _, count = struct.unpack_from(">II", data, pos)
    pos += 8
    for _ in range(count + 1):  # the realm, then each component
        (length,) = struct.unpack_from(">I", data, pos)
        pos += 4 + length
    return pos


def _skip_octets(data, pos):
    (length,) = struct.unpack_from(">I", data, pos)
    return pos + 4 + length


def forge_times(data, end, renew_till):
    """``data`` (a FILE cache, format 0x0504) with every ticket's end and renew-until
    times replaced: what a user editing their own cache can do."""
    data = bytearray(data)
    (version,) = struct.unpack_from(">H", data, 0)
    assert version == 0x0504
    (header,) = struct.unpack_from(">H", data, 2)
    pos = _skip_principal(data, 4 + header)
    while pos < len(data):
        pos = _skip_principal(data, pos)  # client
        pos = _skip_principal(data, pos)  # server
        pos += 2  # key type
        pos = _skip_octets(data, pos)  # key
        auth, start, _, _ = struct.unpack_from(">IIII", data, pos)
        struct.pack_into(">IIII", data, pos, auth, start, end, renew_till)
        pos += 16 + 5  # times, is_skey, flags
        for _ in range(2):  # addresses, authorization data
            (count,) = struct.unpack_from(">I", data, pos)
            pos += 4
            for _ in range(count):
                pos = _skip_octets(data, pos + 2)
        pos = _skip_octets(data, pos)  # ticket
        pos = _skip_octets(data, pos)  # second ticket
    return bytes(data)
