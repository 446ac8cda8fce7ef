"""``kerbauth doctor``: which piece of a deployment is wrong, before users find out.

Each check is a plain function of a :class:`Site` that returns ``(status,
message, hint)``; :func:`run` runs them in order and :func:`format_result`
makes one line of each. Network checks are bounded by a timeout. No password
is ever printed. The modules, by concern:

- :mod:`~kerbauth.doctor.config`: loading the hub's config file, the options;
- :mod:`~kerbauth.doctor.kerberos`: krb5.conf and the realm's KDCs;
- :mod:`~kerbauth.doctor.tickets`: the cache directory, the user's account,
  keytab and a real ticket;
- :mod:`~kerbauth.doctor.directory`: the LDAP servers, TLS, bind and lookup;
- :mod:`~kerbauth.doctor.hadoop`: the Hadoop configuration, a JVM's login;
- :mod:`~kerbauth.doctor.report`: the order of the checks, running them, the lines.
"""

from kerbauth.core.realm import read_krb5_conf
from kerbauth.doctor.config import ConfigNotLoaded, Site, load_site
from kerbauth.doctor.outcome import OK, PROBLEM, SKIP, Result
from kerbauth.doctor.report import CHECKS, format_result, run
from kerbauth.doctor.tickets import keytab_entries

__all__ = [
    "OK",
    "PROBLEM",
    "SKIP",
    "ConfigNotLoaded",
    "Site",
    "Result",
    "load_site",
    "read_krb5_conf",
    "keytab_entries",
    "run",
    "format_result",
    "CHECKS",
]
