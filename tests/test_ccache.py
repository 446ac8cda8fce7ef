"""The cache directory and atomic cache writes, including planted-link attacks."""

import os
import stat
import subprocess

import pytest

from kerbauth.core import tickets
from kerbauth.core.cache_directory import CacheDirectory, prepare_ccache_dir
from kerbauth.core.ccache import read_ccache
from kerbauth.core.errors import CcacheError
from support.dirs import fill_up, small_tmpfs
from support.realm import add_principal

UID, GID = 54321, 54322
VICTIM_CONTENT = b"root:secret-victim-data\n"


# --- the cache directory -------------------------------------------------------


def test_missing_dir_is_created_0711_root_owned(tmp_path):
    path = tmp_path / "kerbauth"
    prepare_ccache_dir(str(path))
    st = os.lstat(path)
    assert stat.S_ISDIR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o711
    assert st.st_uid == os.geteuid()


def test_existing_safe_dir_is_kept_as_it_is(tmp_path):
    path = tmp_path / "kerbauth"
    path.mkdir(mode=0o700)
    os.chmod(path, 0o700)
    prepare_ccache_dir(str(path))
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o700


@pytest.mark.parametrize("mode", [0o1777, 0o777, 0o775, 0o757])
def test_writable_by_others_is_refused(tmp_path, mode):
    path = tmp_path / "shared"
    path.mkdir()
    os.chmod(path, mode)
    with pytest.raises(
        CcacheError, match=r"KerberosTickets.ccache_dir .* writable by group or others"
    ):
        prepare_ccache_dir(str(path))


def test_symlinked_dir_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o711)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(CcacheError, match="is a symbolic link"):
        prepare_ccache_dir(str(link))


def test_dir_owned_by_someone_else_is_refused(tmp_path):
    path = tmp_path / "theirs"
    path.mkdir(mode=0o711)
    os.chown(path, UID, GID)
    with pytest.raises(CcacheError, match=f"owned by uid {UID}"):
        prepare_ccache_dir(str(path))


def test_relative_dir_is_refused():
    with pytest.raises(CcacheError, match="absolute path"):
        prepare_ccache_dir("run/kerbauth")


def test_dir_right_inside_a_world_writable_dir_is_refused(tmp_path):
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    with pytest.raises(CcacheError, match=r"is inside .*sticky, which others can write"):
        prepare_ccache_dir(str(sticky / "kerbauth"))
    assert not (sticky / "kerbauth").exists()


def test_dir_below_a_non_sticky_world_writable_dir_is_refused(tmp_path):
    open_dir = tmp_path / "open"
    (open_dir / "safe").mkdir(parents=True)
    os.chmod(open_dir, 0o777)
    with pytest.raises(CcacheError, match="which anyone can write"):
        prepare_ccache_dir(str(open_dir / "safe" / "kerbauth"))


# --- atomic writes and planted links ------------------------------------------------


@pytest.fixture
def cache_dir(tmp_path):
    """The hub's cache directory, held open (root, 0711)."""
    held = CacheDirectory(str(tmp_path / "cc")).open()
    yield held
    held.close()


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim"
    path.write_bytes(VICTIM_CONTENT)
    os.chmod(path, 0o644)
    return path


def assert_victim_untouched(victim):
    st = os.lstat(victim)
    assert (st.st_uid, st.st_gid) == (0, 0)
    assert stat.S_IMODE(st.st_mode) == 0o644
    assert victim.read_bytes() == VICTIM_CONTENT


def assert_user_cache(path, content):
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode), "a regular file, not the planted link"
    assert (st.st_uid, st.st_gid) == (UID, GID)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_nlink == 1
    assert open(path, "rb").read() == content


def assert_no_leftovers(directory, *expected):
    assert sorted(os.listdir(directory)) == sorted(expected)


def test_symlink_at_the_cache_path_is_replaced_not_followed(cache_dir, victim):
    cache = cache_dir.file_path("krb5cc_alice")
    os.symlink(victim, cache)
    cache_dir.write("krb5cc_alice", b"new-ticket", UID, GID)
    assert_victim_untouched(victim)
    assert_user_cache(cache, b"new-ticket")
    assert_no_leftovers(cache_dir.path, "krb5cc_alice")


def test_hardlink_at_the_cache_path_is_replaced(cache_dir, victim):
    cache = cache_dir.file_path("krb5cc_alice")
    os.link(victim, cache)
    cache_dir.write("krb5cc_alice", b"new-ticket", UID, GID)
    assert_victim_untouched(victim)
    assert_user_cache(cache, b"new-ticket")


GUESSABLE = ["krb5cc_alice.tmp", "krb5cc_alice.new", "krb5cc_alice~", ".kerbauth-", "ccache"]


def test_links_at_guessable_temp_names_are_never_written_through(cache_dir, victim):
    for name in GUESSABLE:
        os.symlink(victim, cache_dir.file_path(name))
    cache_dir.write("krb5cc_alice", b"new-ticket", UID, GID)
    assert_victim_untouched(victim)
    assert_user_cache(cache_dir.file_path("krb5cc_alice"), b"new-ticket")
    assert_no_leftovers(cache_dir.path, "krb5cc_alice", *GUESSABLE)


def test_read_and_remove_never_follow_a_link(cache_dir, victim):
    os.symlink(victim, cache_dir.file_path("krb5cc_alice"))
    with pytest.raises(CcacheError, match="cannot be read"):
        cache_dir.read("krb5cc_alice")
    assert cache_dir.remove("krb5cc_alice") is True
    assert cache_dir.remove("krb5cc_alice") is False
    assert cache_dir.read("krb5cc_alice") is None
    assert_victim_untouched(victim)


def test_a_removed_dir_is_made_again_by_the_hub(cache_dir):
    os.rmdir(cache_dir.path)  # a /tmp cleaner, say
    cache_dir.write("krb5cc_alice", b"new-ticket", UID, GID)
    st = os.lstat(cache_dir.path)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o711)
    assert_user_cache(cache_dir.file_path("krb5cc_alice"), b"new-ticket")


@pytest.mark.parametrize("mode", [0o777, 0o711])
def test_a_dir_remade_by_someone_else_gets_no_cache(cache_dir, mode):
    cache_dir.write("krb5cc_alice", b"old-ticket", UID, GID)
    os.unlink(cache_dir.file_path("krb5cc_alice"))
    os.rmdir(cache_dir.path)
    os.mkdir(cache_dir.path)
    os.chmod(cache_dir.path, mode)
    os.chown(cache_dir.path, UID, GID)  # the user who took the free name
    with pytest.raises(CcacheError, match="was replaced while the hub ran"):
        cache_dir.write("krb5cc_bob", b"bobs-ticket", UID + 1, GID)
    assert os.listdir(cache_dir.path) == []


def test_stale_temp_files_of_a_dead_hub_are_removed_at_open(tmp_path):
    path = tmp_path / "cc"
    CacheDirectory(str(path)).open().close()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (path / f".kerbauth-{dead.pid}-0123abcd").write_bytes(b"a ticket from a killed hub")
    (path / ".kerbauth-x1y2z3").mkdir()  # an older release's private directory
    (path / ".kerbauth-x1y2z3" / "ccache").write_bytes(b"another")
    live = path / ".kerbauth-1-89abcdef"  # pid 1 is alive: another hub's, in use
    live.write_bytes(b"in use")
    CacheDirectory(str(path)).open().close()
    assert os.listdir(path) == [live.name]


@pytest.fixture
def full_cache_dir(tmp_path):
    """A cache directory on a small tmpfs (64 KiB), to be filled up by the test."""
    path = tmp_path / "small"
    path.mkdir(mode=0o711)
    with small_tmpfs(path):
        yield path


def test_a_full_file_system_is_a_ccache_error_and_keeps_the_old_cache(full_cache_dir):
    held = CacheDirectory(str(full_cache_dir)).open()
    try:
        held.write("krb5cc_alice", b"old-ticket", UID, GID)
        fill_up(full_cache_dir)
        with pytest.raises(CcacheError, match="No space left on device") as info:
            held.write("krb5cc_alice", b"new-ticket" * 1000, UID, GID)
    finally:
        held.close()
    assert info.value.cause == "ccache"
    assert_user_cache(full_cache_dir / "krb5cc_alice", b"old-ticket")
    assert_no_leftovers(full_cache_dir, "krb5cc_alice", "filler")


# --- reading a cache ----------------------------------------------------------------


@pytest.mark.parametrize("backend", ["krb5", "kinit"])
def test_read_ccache_gives_the_principal_and_tgt_times(krb5_env, tmp_path, backend):
    realm = krb5_env
    keytab = tmp_path / "kt"
    principal = add_principal(realm, f"reader{backend}", str(keytab))
    data = tickets.keytab_ticket_bytes(
        tickets.make_backend(backend),
        principal=principal,
        keytab=str(keytab),
        keytab_owner=0,
        timeout=10,
    )
    held = CacheDirectory(str(tmp_path / "cc")).open()
    cache = held.write("krb5cc_reader", data, UID, GID)
    times = read_ccache(f"FILE:{cache}")
    assert times.principal == principal
    # k5test's default maximum life is 24 hours.
    assert 0 < times.end - times.start <= 24 * 3600


def test_read_ccache_refuses_garbage(tmp_path):
    path = tmp_path / "garbage"
    path.write_bytes(b"\x05\x04\x00\x0cnot really a cache")
    with pytest.raises(CcacheError, match="not a readable credential cache"):
        read_ccache(str(path))


def test_read_ccache_does_not_follow_links(tmp_path, victim):
    link = tmp_path / "cc"
    link.symlink_to(victim)
    with pytest.raises(CcacheError, match="cannot be read"):
        read_ccache(str(link))


def test_reading_or_removing_in_a_removed_dir_makes_nothing(cache_dir):
    os.rmdir(cache_dir.path)
    assert cache_dir.read("krb5cc_alice") is None
    assert cache_dir.exists("krb5cc_alice") is False
    assert cache_dir.remove("krb5cc_alice") is False
    assert not os.path.lexists(cache_dir.path), "only a write makes the directory again"
