"""The KDC probe, through each backend, against the real k5test realm.

The library finds and asks the KDCs; the probe reads which it asked and
which answered from the library's trace.
"""

import os
import socket
import time

import pytest

from kerbauth.core.kdc_probe import parse_trace, probe_kdc, why_unanswered

BACKENDS = pytest.mark.parametrize("backend", ["krb5", "kinit"])


def environ(k5, config=None):
    return {"PATH": os.environ["PATH"], "KRB5_CONFIG": str(config or k5.env["KRB5_CONFIG"])}


@BACKENDS
def test_a_reachable_kdc_answers_over_tcp_and_knows_its_realm(realm, backend):
    probe = probe_kdc(realm.realm, backend=backend, timeout=5, environ=environ(realm))
    kdc = f"127.0.0.1:{realm.portbase}"
    assert probe.traced and not probe.timed_out
    assert probe.tried == ((kdc, "tcp"),)
    assert probe.answered == ((kdc, "tcp"),)
    assert probe.principal == f"krbtgt/{realm.realm}@{realm.realm}"
    assert probe.known is True


@BACKENDS
def test_an_unknown_principal_is_told_apart_from_no_answer(realm, backend):
    principal = f"kbprobe-nobody@{realm.realm}"
    probe = probe_kdc(realm.realm, principal, backend=backend, timeout=5, environ=environ(realm))
    assert probe.answered == ((f"127.0.0.1:{realm.portbase}", "tcp"),)
    assert probe.errors[0] == 6  # KDC_ERR_C_PRINCIPAL_UNKNOWN
    assert probe.known is False
    assert "not found in Kerberos database" in probe.message


@BACKENDS
def test_a_kdc_of_another_realm_does_not_know_its_krbtgt(realm, backend, tmp_path):
    """krb5.conf sends OTHER.TEST to this realm's KDC: it answers, but not for OTHER.TEST."""
    config = tmp_path / "krb5.conf"
    config.write_text(
        "[libdefaults]\n  dns_lookup_kdc = false\n  dns_lookup_realm = false\n"
        f"[realms]\n  OTHER.TEST = {{\n    kdc = 127.0.0.1:{realm.portbase}\n  }}\n"
    )
    probe = probe_kdc("OTHER.TEST", backend=backend, timeout=5, environ=environ(realm, config))
    assert probe.answered and probe.known is False


@BACKENDS
def test_a_stopped_kdc_is_reported_quickly_with_the_reason(private_realm, backend):
    k5 = private_realm
    k5.stop_kdc()
    started = time.monotonic()
    probe = probe_kdc(k5.realm, backend=backend, timeout=10, environ=environ(k5))
    took = time.monotonic() - started
    kdc = f"127.0.0.1:{k5.portbase}"
    assert took < 3, took  # refused at once, not the timeout
    assert probe.traced and not probe.timed_out
    assert probe.tried == ((kdc, "tcp"), (kdc, "udp"))
    assert probe.answered == () and probe.known is None
    assert "Cannot contact any KDC" in probe.message
    reasons = [why_unanswered(*tried, timeout=2) for tried in probe.tried]
    assert reasons == ["connection refused", "connection refused"]


def test_a_hung_kdc_costs_the_timeout_and_no_more(dead_udp_kdc):
    """Something that takes the request and never answers: the child is killed at the timeout."""
    config, address = dead_udp_kdc
    started = time.monotonic()
    probe = probe_kdc(
        "HUNG.TEST",
        backend="kinit",
        timeout=1.5,
        environ={"PATH": os.environ["PATH"], "KRB5_CONFIG": config},
    )
    took = time.monotonic() - started
    assert 1.4 < took < 3, took
    assert probe.timed_out and probe.answered == ()
    assert probe.tried == ((address, "tcp"), (address, "udp"))
    assert why_unanswered(address, "udp", timeout=0.5) == "no answer in time"


@pytest.fixture
def dead_udp_kdc(tmp_path):
    """A UDP socket that takes requests and never answers, as the only KDC of HUNG.TEST.

    The same TCP port is bound and not listening: connections to it are refused.
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    tcp = socket.socket()
    try:
        tcp.bind(("127.0.0.1", port))
    except OSError:
        tcp.close()
        s.close()
        raise
    config = tmp_path / "krb5.conf"
    config.write_text(
        "[libdefaults]\n  dns_lookup_kdc = false\n"
        f"[realms]\n  HUNG.TEST = {{\n    kdc = 127.0.0.1:{port}\n  }}\n"
    )
    try:
        yield str(config), f"127.0.0.1:{port}"
    finally:
        tcp.close()
        s.close()


def test_a_kinit_that_cannot_be_run_is_an_oserror(realm, tmp_path):
    with pytest.raises(FileNotFoundError, match="no-kinit"):
        probe_kdc(realm.realm, backend="kinit", kinit_path=str(tmp_path / "no-kinit"))


def test_parse_trace_reads_what_the_library_did():
    trace = (
        "[7] 1.000001: Sending request (186 bytes) to X.TEST\n"
        "[7] 1.000002: Initiating TCP connection to stream 10.0.0.1:88\n"
        "[7] 1.000003: Terminating TCP connection to stream 10.0.0.1:88\n"
        "[7] 1.000004: Sending initial UDP request to dgram 10.0.0.1:88\n"
        "[7] 1.000005: Sending retry UDP request to dgram 10.0.0.1:88\n"
        "[7] 1.000006: Initiating TCP connection to stream [2001:db8::2]:88\n"
        "[7] 1.000007: Sending TCP request to stream [2001:db8::2]:88\n"
        "[7] 1.000008: Received answer (163 bytes) from stream [2001:db8::2]:88\n"
        "[7] 1.000009: Received error from KDC: -1765328378/Client not found in Kerberos database\n"
        "Password for x@X.TEST: "
    )
    tried, answered, errors, traced = parse_trace(trace)
    assert tried == (
        ("10.0.0.1:88", "tcp"),
        ("10.0.0.1:88", "udp"),
        ("[2001:db8::2]:88", "tcp"),
    )
    assert answered == (("[2001:db8::2]:88", "tcp"),)
    assert errors == (6,)
    assert traced
    assert parse_trace("kinit: unknown option\n") == ((), (), (), False)
