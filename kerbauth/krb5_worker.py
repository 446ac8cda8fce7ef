"""The worker process of the in-process backend (run as ``python -m kerbauth.krb5_worker``).

It reads one JSON request a line on stdin and answers one JSON line on
stdout. It is single-threaded and keeps one krb5 context, which MIT requires
to be used by one thread at a time. The hub kills a worker whose request
outlives the timeout (MIT krb5 1.20 has no setting that bounds how long it
waits for a KDC that never answers: 27 s was measured); the worker exits when
its stdin closes, so it never outlives the hub.
"""

import json
import sys

import krb5


def keytab_ticket(ctx, principal, keytab, ccache):
    princ = krb5.parse_name_flags(ctx, principal.encode())
    kt = krb5.kt_resolve(ctx, keytab.encode())
    opt = krb5.get_init_creds_opt_alloc(ctx)
    creds = krb5.get_init_creds_keytab(ctx, princ, opt, keytab=kt)
    _store(ctx, princ, creds, ccache)


def _store(ctx, principal, creds, ccache):
    cache = krb5.cc_resolve(ctx, b"FILE:" + ccache.encode())
    krb5.cc_initialize(ctx, cache, principal)
    krb5.cc_store_cred(ctx, cache, creds)


def password_ticket(ctx, principal, password, renew_life, ccache):
    princ = krb5.parse_name_flags(ctx, principal.encode())
    opt = krb5.get_init_creds_opt_alloc(ctx)
    if renew_life:
        krb5.get_init_creds_opt_set_renew_life(opt, int(renew_life))
    creds = krb5.get_init_creds_password(ctx, princ, opt, password=password.encode())
    _store(ctx, princ, creds, ccache)


def renew_ticket(ctx, source, ccache):
    old = krb5.cc_resolve(ctx, b"FILE:" + source.encode())
    princ = krb5.cc_get_principal(ctx, old)
    creds = krb5.get_renewed_creds(ctx, princ, old)
    _store(ctx, princ, creds, ccache)


OPERATIONS = {
    "keytab_ticket": keytab_ticket,
    "password_ticket": password_ticket,
    "renew_ticket": renew_ticket,
}


def serve(stdin, stdout):
    ctx = krb5.init_context()
    for line in stdin:
        request = json.loads(line)
        operation = OPERATIONS[request.pop("op")]
        try:
            operation(ctx, **request)
        except (krb5.Krb5Error, ValueError, OSError) as e:
            reply = {"ok": False, "message": str(e)}
        else:
            reply = {"ok": True}
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
