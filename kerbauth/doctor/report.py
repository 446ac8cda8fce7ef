"""The checks in the order they run, running them, and one line of each."""

from kerbauth.doctor import directory, hadoop, kerberos, tickets
from kerbauth.doctor.config import check_config, check_startup
from kerbauth.doctor.outcome import PROBLEM, SKIP, NotApplicable, Result, Skip

__all__ = ["CHECKS", "run", "format_result"]

# (name, check) in the order they run and are printed.
CHECKS = [
    ("config", check_config),
    ("startup", check_startup),
    ("krb5.conf", kerberos.check_krb5_conf),
    ("kdc", kerberos.check_kdc),
    ("ccache_dir", tickets.check_ccache_dir),
    ("account", tickets.check_account),
    ("keytab", tickets.check_keytab),
    ("ticket", tickets.check_ticket),
    ("hadoop", hadoop.check_hadoop_conf),
    ("jvm", hadoop.check_jvm_login),
    ("ldap", directory.check_ldap_servers),
    ("ldap-tls", directory.check_ldap_tls),
    ("ldap-bind", directory.check_ldap_bind),
    ("ldap-lookup", directory.check_ldap_lookup),
]


def run(site, checks=None):
    """Run ``checks`` (default :data:`CHECKS`) on ``site``; yield a :class:`Result` each."""
    for name, check in CHECKS if checks is None else checks:
        try:
            status, message, hint = check(site)
        except NotApplicable:
            continue
        except Skip as e:
            status, message, hint = SKIP, str(e), ""
        except Exception as e:  # a check must never hide the ones after it
            status, message, hint = PROBLEM, f"the check failed: {type(e).__name__}: {e}", ""
        yield Result(name, status, message, hint)


def format_result(result):
    """One line: status, check name, message, and the hint after ``hint:``."""
    line = f"{result.status:<8}{result.name:<12}{result.message}"
    if result.hint:
        line += f"  hint: {result.hint}"
    return line
