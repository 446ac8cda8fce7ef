"""The hub on a real external database (MariaDB, PostgreSQL), restarted, as docs/database.md has it.

For each database: the PAM edge-node example with ``password_tickets`` and
the page's configuration lines (its ``db_url``, naming a private server of
the test's own that support.hubdb set up with the page's statements, and the
password read from ``$CREDENTIALS_DIRECTORY``, where systemd's
``LoadCredential=`` puts it), ``JUPYTERHUB_CRYPT_KEY``, a fixed cookie secret
(``JPY_COOKIE_SECRET``; no cookie secret file), and the users' servers kept
running across a hub restart (``cleanup_servers = False``). The realm's
tickets live 45 s and are renewable for 10 minutes, so the hub renews within
the test.

A user logs in through the form and starts a server holding the ticket of
their password. The hub restarts, on the same database and cookie secret,
with a new crypt key put in front of the old one (the documented rotation).
Then the user's old cookies still get them their home page and
``/hub/api/user`` without a new login; the restarted hub, which has only
auth_state to go by, renews the ticket (a renewal of that login's ticket,
same renew-until) into the still-running server's cache and saves it back to
auth_state, encrypted with the new key; an admin token reads that ticket
over the REST API; and no table of the database holds the password or the
ticket's secret parts in clear (nor does the hub's log, which also never
shows the database's password), while the user's auth_state column does
hold the encrypted ticket.
"""

import base64
import json
import os
import re
import secrets
import shutil
import struct
import subprocess
import tempfile

import pytest
import sqlalchemy
from cryptography.fernet import Fernet, InvalidToken

from kerbauth.core.ccache import parse_ccache, read_ccache, read_ccache_bytes
from kerbauth.hub.tickets import AUTH_STATE_KEY
from support import hubdb
from support.edge import example_config, server_environment, wait_for
from support.hubdb import KINDS
from support.realm import short_tickets_realm
from support.served import wait_for_ticket

PAGE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "database.md"
)
# The realm's max_life: longer than a busy host's login, spawn and restart take together
# (the restarted hub must find the ticket unexpired to renew it), renewed at 27 s.
LIFE = 45
RENEWABLE = 600  # seconds: the realm's max_renewable_life
CONFIG = f"""
c.KerberosTickets.principal_template = "{{username}}@{{realm}}"
c.KerberosTickets.password_tickets = True
c.KerberosTickets.renew_lifetime = {RENEWABLE}
c.KerberosTickets.renew_margin = 18
c.KerberosTickets.renew_interval = 1
c.KerberosTickets.renew_max_backoff = 2
c.Authenticator.enable_auth_state = True
# The users' servers outlive the hub process, as in a restart or an upgrade of the hub.
c.JupyterHub.cleanup_servers = False
"""


@pytest.fixture(scope="module")
def short_realm():
    with short_tickets_realm(LIFE, RENEWABLE) as k5:
        yield k5


# --- the page's configuration ------------------------------------------------------


def blocks(language):
    """The fenced blocks of ``language`` on docs/database.md."""
    with open(PAGE) as f:
        return re.findall(rf"^```{language}\n(.*?)^```$", f.read(), re.DOTALL | re.MULTILINE)


DOCUMENTED_ADDRESS = {
    "mariadb": "db.corp.example.com:3306",
    "postgresql": "db.corp.example.com:5432",
}


def documented_config(database):
    """The page's configuration lines for ``database``: the password read from
    ``$CREDENTIALS_DIRECTORY``, then its ``db_url`` (the test's server in place of the
    page's)."""
    (password,) = [b for b in blocks("python") if "CREDENTIALS_DIRECTORY" in b]
    (url,) = [b for b in blocks("python") if f"{database.driver}://" in b and "db_url" in b]
    address = DOCUMENTED_ADDRESS[database.kind]
    assert url.count(address) == 1, url
    return password + "\n" + url.replace(address, f"127.0.0.1:{database.port}")


def test_the_page_gives_the_statements_the_databases_are_set_up_with():
    assert hubdb.MARIADB_SETUP in blocks("sql")
    assert hubdb.POSTGRES_SETUP in blocks("text")
    assert hubdb.POSTGRES_HBA in blocks("text")
    (line,) = [b for b in blocks("ini") if "LoadCredential=jupyterhub-db-password:" in b]
    assert line.strip().endswith(":/etc/jupyterhub/jupyterhub-db-password")


# --- what must not be in the database in clear ---------------------------------------


def _octets(data, pos):
    (length,) = struct.unpack_from(">I", data, pos)
    return data[pos + 4 : pos + 4 + length], pos + 4 + length


def _principal(data, pos):
    _, count = struct.unpack_from(">II", data, pos)
    realm, pos = _octets(data, pos + 8)
    for _ in range(count):
        _, pos = _octets(data, pos)
    return realm, pos


def ticket_secrets(data):
    """The secret parts of a FILE cache (version 4): each credential's session key and
    ticket (cache configuration entries, in the X-CACHECONF: realm, are not secret)."""
    assert data[:2] == b"\x05\x04", "a version 4 cache"
    (header,) = struct.unpack_from(">H", data, 2)
    _, pos = _principal(data, 4 + header)
    found = []
    while pos < len(data):
        _, pos = _principal(data, pos)  # client
        server_realm, pos = _principal(data, pos)
        key, pos = _octets(data, pos + 2)  # after the key type
        pos += 16 + 1 + 4  # times, is_skey, flags
        for _ in range(2):  # addresses, then authorization data
            (count,) = struct.unpack_from(">I", data, pos)
            pos += 4
            for _ in range(count):
                _, pos = _octets(data, pos + 2)
        ticket, pos = _octets(data, pos)
        _, pos = _octets(data, pos)  # second ticket
        if not server_realm.startswith(b"X-CACHECONF:"):
            found += [key, ticket]
    assert len(found) >= 2 and all(len(part) >= 16 for part in found), "a key and a ticket"
    return found


def clear_forms(secret):
    """``secret`` as it would show in a table kept in clear: raw, hex, and base64 (standard
    and URL-safe) at each of the three alignments it can have inside a longer blob."""
    forms = {secret, secret.hex().encode(), secret.hex().upper().encode()}
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * shift + secret)
            # Only the characters that come from the secret's bits alone.
            forms.add(text[-(-8 * shift // 6) : 8 * (shift + len(secret)) // 6])
    return forms


def leaks(haystack, named_secrets):
    """The names of the secrets any clear form of which is in ``haystack`` (bytes)."""
    return sorted(
        {name for name, secret in named_secrets for form in clear_forms(secret) if form in haystack}
    )


def _as_bytes(value):
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return str(value).encode()


def dump_tables(engine):
    """``{table: [{column: value}, ...]}``: ``SELECT *`` of every table of the database."""
    metadata = sqlalchemy.MetaData()
    metadata.reflect(engine)
    with engine.connect() as connection:
        return {
            table.name: [dict(row._mapping) for row in connection.execute(sqlalchemy.select(table))]
            for table in metadata.sorted_tables
        }


def stored_auth_state(engine, name, key):
    """The user's auth_state as the database holds it: ``(ciphertext, decrypted or None)``,
    decrypted with ``key`` (hex) alone."""
    users = sqlalchemy.Table("users", sqlalchemy.MetaData(), autoload_with=engine)
    with engine.connect() as connection:
        blob = connection.execute(
            sqlalchemy.select(users.c.encrypted_auth_state).where(users.c.name == name)
        ).scalar_one()
    blob = bytes(blob or b"")
    fernet = Fernet(base64.urlsafe_b64encode(bytes.fromhex(key)))
    try:
        return blob, json.loads(fernet.decrypt(blob))
    except InvalidToken:
        return blob, None


def _stored_ticket(state):
    return base64.b64decode(state[AUTH_STATE_KEY])


# --- the test ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_password_tickets_and_sessions_survive_a_hub_restart(
    kind, hub_database, short_realm, hub_factory, ccache_dir, pam_service, make_user
):
    database = hub_database(kind)
    make_user.ensure_group("hub-users")
    make_user.ensure_group("hub-admins")  # the example names both
    user = make_user(groups=("hub-users",))
    principal = f"{user.name}@{short_realm.realm}"
    short_realm.addprinc(principal, user.password)
    old_key, new_key = secrets.token_hex(32), secrets.token_hex(32)
    # The database's password where systemd's LoadCredential= would put it.
    credentials = tempfile.mkdtemp(prefix="kerbauth-credentials-")
    engine = database.engine()
    try:
        fd = os.open(
            os.path.join(credentials, "jupyterhub-db-password"),
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
            0o600,
        )
        with os.fdopen(fd, "w") as f:
            f.write(database.password + "\n")
        hub = hub_factory(
            example_config(ccache_dir, CONFIG),
            env={
                "JUPYTERHUB_PAM_SERVICE": pam_service(),
                "KRB5_CONFIG": short_realm.env["KRB5_CONFIG"],
                "JUPYTERHUB_CRYPT_KEY": old_key,
                "JPY_COOKIE_SECRET": secrets.token_hex(32),
                "CREDENTIALS_DIRECTORY": credentials,
            },
            after=documented_config(database),
        )
        session, response = hub.login_session(user.name, user.password)
        assert response.status_code == 302, response.text
        hub.start_server(user.name)
        env = server_environment(hub, user.name)
        path = env["KRB5CCNAME"].removeprefix("FILE:")
        first = wait_for_ticket(path, principal)
        assert first.renew_till > first.end, "a renewable ticket from the password"
        caches = [read_ccache_bytes(path)]
        _, state = stored_auth_state(engine, user.name, old_key)
        assert parse_ccache(_stored_ticket(state)).principal == principal
        pid = hub.server(user.name)["state"]["pid"]

        # The restart: the same database and cookie secret, a new crypt key in front.
        hub.env["JUPYTERHUB_CRYPT_KEY"] = f"{new_key};{old_key}"
        restarted_at = len(hub.log_text())
        # What the old hub left in the cache, read while no hub runs.
        hub.restart(while_stopped=lambda: caches.append(read_ccache_bytes(path)))
        at_restart = parse_ccache(caches[-1])
        server = hub.server(user.name)
        assert server and server["state"]["pid"] == pid, "the same server, still running"

        # The session from before the restart still works: no new login.
        home = session.get(f"{hub.url}/hub/home", allow_redirects=False, timeout=30)
        assert home.status_code == 200, (home.status_code, home.headers.get("Location"))
        me = session.get(f"{hub.url}/hub/api/user", allow_redirects=False, timeout=30)
        assert me.status_code == 200 and me.json()["name"] == user.name, me.text
        assert f"User logged in: {user.name}" not in hub.log_text()[restarted_at:]
        # The secret came from the environment: there is no file it could have come from.
        assert not os.path.exists(os.path.join(hub.workdir, "cookie_secret"))
        assert not os.path.exists(os.path.join(hub.workdir, "jupyterhub.sqlite"))

        # Renewal resumes: the restarted hub renews that login's ticket ...
        wait_for(
            lambda: read_ccache(path).end > at_restart.end,
            LIFE + 15,
            "the restarted hub renewed the ticket",
            every=0.2,
        )
        renewed = read_ccache(path)
        assert (renewed.principal, renewed.renew_till) == (principal, first.renew_till)
        caches.append(read_ccache_bytes(path))
        klist = subprocess.run(
            ["klist", "-s"],
            env=env,
            user=user.uid,
            group=user.gid,
            extra_groups=[],
            cwd=user.home,
            capture_output=True,
            timeout=30,
        )
        assert klist.returncode == 0, klist.stderr
        # ... and saves it back to auth_state, encrypted with the new key.
        saved = []

        def saved_renewed():
            _, state = stored_auth_state(engine, user.name, new_key)
            if state and parse_ccache(_stored_ticket(state)).end >= renewed.end:
                saved[:] = [state]
                return True
            return False

        wait_for(saved_renewed, 20, "the renewed ticket was saved in auth_state", every=0.2)

        # Nothing kerbauth keeps is in the database in clear.
        dump = dump_tables(engine)
        assert {"users", "spawners", "api_tokens", "oauth_clients"} <= set(dump), sorted(dump)
        (row,) = [row for row in dump["users"] if row["name"] == user.name]
        blob = bytes(row["encrypted_auth_state"] or b"")
        state = json.loads(Fernet(base64.urlsafe_b64encode(bytes.fromhex(new_key))).decrypt(blob))
        assert parse_ccache(_stored_ticket(state)).principal == principal, "the ticket, encrypted"
        named = [("the password", user.password.encode())]
        for data in [*caches, _stored_ticket(saved[0]), _stored_ticket(state)]:
            named.append(("a ticket cache", data))
            named += [("a session key or ticket", part) for part in ticket_secrets(data)]
        everything = b"\n".join(
            _as_bytes(value) for rows in dump.values() for row in rows for value in row.values()
        )
        assert leaks(json.dumps(state).encode(), named) == [
            "a session key or ticket",
            "a ticket cache",
        ], "the check finds the ticket where it is in clear"
        assert leaks(everything, named) == []
        # A token with admin:auth_state (the admin role has it) reads the ticket over the API.
        model = hub.api("GET", f"/users/{user.name}").json()
        assert parse_ccache(_stored_ticket(model["auth_state"])).principal == principal
        named.append(("the database's password", database.password.encode()))
        assert leaks(hub.log_text().encode(), named) == []
        if kind == "mariadb":
            with engine.connect() as connection:
                collations = connection.execute(
                    sqlalchemy.text(
                        "SELECT DISTINCT TABLE_COLLATION FROM information_schema.TABLES"
                        " WHERE TABLE_SCHEMA = DATABASE()"
                    )
                ).scalars()
                assert set(collations) == {"utf8mb4_unicode_ci"}
    finally:
        engine.dispose()
        shutil.rmtree(credentials)
