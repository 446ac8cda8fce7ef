"""A Hadoop client configuration (``HADOOP_CONF_DIR``), as far as Kerberos goes.

Hadoop's clients (``UserGroupInformation`` in the JVM that pyspark starts,
``hdfs``, ``yarn``) use Kerberos only when the ``core-site.xml`` on their
``HADOOP_CONF_DIR`` sets ``hadoop.security.authentication`` to ``kerberos``;
``spark.hadoop.*`` settings alone do not make UGI report Kerberos. Without it
they run as the local user name, unauthenticated, and a Kerberized cluster
refuses them with "GSS initiate failed" or "SIMPLE authentication is not
enabled". This module reads that one fact, and says what is wrong otherwise.
"""

import os
import xml.etree.ElementTree as ElementTree

__all__ = ["AUTHENTICATION", "HadoopConfError", "core_site", "properties", "check_kerberos"]

AUTHENTICATION = "hadoop.security.authentication"
CLIENT_FILES = "core-site.xml, hdfs-site.xml and yarn-site.xml"


class HadoopConfError(ValueError):
    """A Hadoop configuration directory whose clients would not use Kerberos."""


def core_site(conf_dir):
    """The path of ``core-site.xml`` in ``conf_dir``; HadoopConfError when there is none."""
    if not conf_dir:
        raise HadoopConfError(
            "no Hadoop configuration directory: set HADOOP_CONF_DIR or give --hadoop-conf-dir,"
            f" the directory of the cluster's client files ({CLIENT_FILES})"
        )
    if not os.path.isdir(conf_dir):
        raise HadoopConfError(f"the Hadoop configuration directory {conf_dir} does not exist")
    path = os.path.join(conf_dir, "core-site.xml")
    if not os.path.isfile(path):
        raise HadoopConfError(
            f"{path} does not exist: copy the cluster's client files ({CLIENT_FILES}) to {conf_dir}"
        )
    return path


def properties(path):
    """The ``name: value`` pairs of a Hadoop ``*-site.xml`` file (the last one of a name wins)."""
    try:
        # The admin's own file, never a user's; ElementTree resolves no external
        # entities, and expat (>= 2.4) bounds entity expansion.
        root = ElementTree.parse(path).getroot()  # noqa: S314
    except (OSError, ElementTree.ParseError) as e:
        raise HadoopConfError(f"{path} cannot be read as a Hadoop configuration: {e}") from None
    found = {}
    for prop in root.iter("property"):
        name = (prop.findtext("name") or "").strip()
        if name:
            found[name] = (prop.findtext("value") or "").strip()
    return found


def check_kerberos(conf_dir):
    """The path of ``conf_dir``'s core-site.xml when it makes Hadoop use Kerberos.

    Raises HadoopConfError naming the file and what it says otherwise. Hadoop
    compares the value without regard to case, and so does this.
    """
    path = core_site(conf_dir)
    value = properties(path).get(AUTHENTICATION)
    if value is None:
        raise HadoopConfError(
            f"{path} does not set {AUTHENTICATION} (Hadoop's default is 'simple'): Hadoop"
            " clients would not use the user's Kerberos ticket; set it to 'kerberos'"
        )
    if value.lower() != "kerberos":
        raise HadoopConfError(
            f"{path} sets {AUTHENTICATION} to {value!r}, not 'kerberos': Hadoop clients would"
            " not use the user's Kerberos ticket"
        )
    return path
