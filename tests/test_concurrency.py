"""Concurrent requests for one user while a reader keeps reading the cache."""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from kerbauth.core import tickets
from kerbauth.core.cache_directory import CacheDirectory
from kerbauth.core.ccache import read_ccache
from support.realm import add_principal

UID, GID = 54321, 54322


@pytest.mark.parametrize("backend_name", ["krb5", "kinit"])
def test_reader_never_sees_an_empty_or_partial_cache(krb5_env, tmp_path, backend_name):
    realm = krb5_env
    keytab = tmp_path / "kt"
    principal = add_principal(realm, f"busy{backend_name}", str(keytab), uid=UID, gid=GID)
    cache_dir = tmp_path / "cc"
    held = CacheDirectory(str(cache_dir)).open()
    cache = cache_dir / "krb5cc_busy"
    backend = tickets.make_backend(backend_name, max_workers=4)

    def request(_):
        data = tickets.keytab_ticket_bytes(
            backend, principal=principal, keytab=str(keytab), keytab_owner=UID, timeout=20
        )
        held.write("krb5cc_busy", data, UID, GID)

    request(0)
    stop = threading.Event()
    reads, failures = [], []

    def reader():
        while not stop.is_set():
            try:
                reads.append(read_ccache(str(cache)).principal)
            except Exception as e:  # noqa: BLE001 - any failure is what we look for
                failures.append(repr(e))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        with ThreadPoolExecutor(20) as pool:
            list(pool.map(request, range(20)))
    finally:
        stop.set()
        thread.join()
        if hasattr(backend, "close"):
            backend.close()
    assert failures == []
    assert len(reads) > 20
    assert set(reads) == {principal}
    assert os.listdir(cache_dir) == ["krb5cc_busy"]
    st = os.lstat(cache)
    assert (st.st_uid, st.st_mode & 0o777, st.st_nlink) == (UID, 0o600, 1)
