"""The cache directory and atomic cache writes, including planted-link attacks."""

import os
import stat

import pytest

from kerbauth import tickets
from kerbauth.ccache import prepare_ccache_dir, read_ccache, remove_ccache, write_ccache
from kerbauth.errors import CcacheError, TicketError
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


# --- atomic writes and planted links ------------------------------------------------


@pytest.fixture
def sticky_dir(tmp_path):
    """A world-writable sticky directory, like /tmp, where users can plant files."""
    path = tmp_path / "sticky"
    path.mkdir()
    os.chmod(path, 0o1777)
    return path


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
    assert path.read_bytes() == content


def fill_with(content):
    def fill(tmp):
        with open(tmp, "xb") as f:
            f.write(content)

    return fill


def assert_no_leftovers(directory, *expected):
    assert sorted(os.listdir(directory)) == sorted(expected)


def test_symlink_planted_at_the_cache_path(sticky_dir, victim):
    cache = sticky_dir / "krb5cc_alice"
    cache.symlink_to(victim)
    os.lchown(cache, UID, GID)
    write_ccache(str(cache), fill_with(b"new-ticket"), UID, GID)
    assert_victim_untouched(victim)
    assert_user_cache(cache, b"new-ticket")
    assert_no_leftovers(sticky_dir, "krb5cc_alice")


def test_hardlink_planted_at_the_cache_path(sticky_dir, victim):
    # fs.protected_hardlinks would stop a real user linking root's file; root
    # planting the link here stands in for a kernel without that protection.
    cache = sticky_dir / "krb5cc_alice"
    os.link(victim, cache)
    write_ccache(str(cache), fill_with(b"new-ticket"), UID, GID)
    assert_victim_untouched(victim)
    assert_user_cache(cache, b"new-ticket")


GUESSABLE = [
    "krb5cc_alice.tmp",
    "krb5cc_alice.new",
    "krb5cc_alice~",
    ".krb5cc_alice",
    "krb5cc_alice.XXXXXX",
    ".kerbauth-",
    ".kerbauth-tmp",
    "tkt_alice",
    "ccache",
]


def test_links_planted_at_guessable_temp_paths(sticky_dir, victim, tmp_path):
    hard_victim = tmp_path / "hard-victim"
    hard_victim.write_bytes(VICTIM_CONTENT)
    os.chmod(hard_victim, 0o644)
    for name in GUESSABLE:
        (sticky_dir / name).symlink_to(victim)
        os.link(hard_victim, sticky_dir / f"{name}.hard")
    cache = sticky_dir / "krb5cc_alice"
    write_ccache(str(cache), fill_with(b"new-ticket"), UID, GID)
    assert_victim_untouched(victim)
    assert_victim_untouched(hard_victim)
    assert_user_cache(cache, b"new-ticket")
    planted = GUESSABLE + [f"{n}.hard" for n in GUESSABLE]
    assert_no_leftovers(sticky_dir, "krb5cc_alice", *planted)


def test_the_fill_only_ever_sees_a_private_directory(sticky_dir):
    seen = {}

    def fill(tmp):
        st = os.lstat(os.path.dirname(tmp))
        seen["mode"] = stat.S_IMODE(st.st_mode)
        seen["uid"] = st.st_uid
        fill_with(b"x")(tmp)

    write_ccache(str(sticky_dir / "krb5cc_alice"), fill, UID, GID)
    assert seen == {"mode": 0o700, "uid": os.geteuid()}


def test_failed_fill_leaves_the_previous_cache_and_no_temp_file(sticky_dir):
    cache = sticky_dir / "krb5cc_alice"
    write_ccache(str(cache), fill_with(b"old-ticket"), UID, GID)

    def failing(tmp):
        fill_with(b"half")(tmp)
        raise TicketError("kdc_unreachable", "no KDC")

    with pytest.raises(TicketError):
        write_ccache(str(cache), failing, UID, GID)
    assert_user_cache(cache, b"old-ticket")
    assert_no_leftovers(sticky_dir, "krb5cc_alice")


def test_a_fill_that_leaves_a_link_is_refused(sticky_dir, victim):
    def sneaky(tmp):
        os.symlink(victim, tmp)

    with pytest.raises(CcacheError):
        write_ccache(str(sticky_dir / "krb5cc_alice"), sneaky, UID, GID)
    assert_victim_untouched(victim)
    assert_no_leftovers(sticky_dir)


def test_remove_ccache_removes_a_planted_link_not_its_target(sticky_dir, victim):
    cache = sticky_dir / "krb5cc_alice"
    cache.symlink_to(victim)
    assert remove_ccache(str(cache)) is True
    assert remove_ccache(str(cache)) is False
    assert_victim_untouched(victim)


# --- reading a cache ----------------------------------------------------------------


@pytest.mark.parametrize("backend", ["krb5", "kinit"])
def test_read_ccache_gives_the_principal_and_tgt_times(krb5_env, tmp_path, backend):
    realm = krb5_env
    keytab = tmp_path / "kt"
    principal = add_principal(realm, f"reader{backend}", str(keytab))
    cache = tmp_path / "cc" / "krb5cc_reader"
    cache.parent.mkdir(mode=0o700)
    tickets.keytab_ticket(
        tickets.make_backend(backend),
        principal=principal,
        keytab=str(keytab),
        ccache=str(cache),
        uid=UID,
        gid=GID,
        timeout=10,
    )
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
