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
    cache = krb5.cc_resolve(ctx, b"FILE:" + ccache.encode())
    krb5.cc_initialize(ctx, cache, princ)
    krb5.cc_store_cred(ctx, cache, creds)


OPERATIONS = {"keytab_ticket": keytab_ticket}


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
