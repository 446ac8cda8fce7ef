"""The ``kerbauth`` command."""

import argparse
import os
import sys

from kerbauth import __version__


def main(argv=None):
    parser = argparse.ArgumentParser(prog="kerbauth", description=__doc__)
    parser.add_argument("--version", action="version", version=f"kerbauth {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    doctor = commands.add_parser(
        "doctor",
        help="check a deployment: krb5.conf, KDC, cache directory, keytabs, LDAP, Hadoop, JVM",
        description="Check, one line each, the pieces kerbauth needs, using the options of a"
        " jupyterhub_config.py. Exit status 0 only when every check passes."
        " Run it as the user the hub runs as (root), in the hub's environment.",
    )
    doctor.add_argument(
        "-f",
        "--config",
        default="jupyterhub_config.py",
        metavar="FILE",
        help="the hub's config file (default: ./jupyterhub_config.py)",
    )
    doctor.add_argument(
        "--user",
        metavar="NAME",
        help="also check this user's account, keytab, ticket, lookup and a JVM's login",
    )
    doctor.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long each network check may wait for an answer (default: 5; the JVM"
        " login check gets at least 30)",
    )
    doctor.add_argument(
        "--hadoop-conf-dir",
        default=os.environ.get("HADOOP_CONF_DIR") or None,
        metavar="DIR",
        help="the Hadoop client configuration to check for Kerberos (core-site.xml's"
        " hadoop.security.authentication); default: $HADOOP_CONF_DIR, else not checked",
    )
    kernelspec = commands.add_parser(
        "kernelspec",
        help="write a Jupyter kernel for PySpark that runs as the notebook's user",
        description="Write the kernelspec of a PySpark kernel: Spark, the Hadoop client"
        " configuration and spark-submit's arguments, and no ticket or user (the kernel"
        " uses its server's KRB5CCNAME). Run again, it says whether the kernel changed.",
    )
    from kerbauth.spark.kernelspec import add_arguments as kernelspec_arguments

    kernelspec_arguments(kernelspec)
    args = parser.parse_args(argv)
    if args.command == "doctor":
        return run_doctor(args)
    if args.command == "kernelspec":
        from kerbauth.spark import kernelspec

        return kernelspec.run(args)
    parser.print_help()
    return 0


def run_doctor(args):
    from kerbauth import doctor

    print(f"kerbauth doctor {__version__}: {args.config}", flush=True)
    try:
        site = doctor.load_site(
            args.config,
            username=args.user,
            timeout=args.timeout,
            hadoop_conf_dir=args.hadoop_conf_dir,
        )
    except doctor.ConfigNotLoaded as e:
        print(doctor.format_result(doctor.Result("config", doctor.PROBLEM, str(e))))
        return 1
    failed = False
    for result in doctor.run(site):
        print(doctor.format_result(result), flush=True)
        failed = failed or result.status == doctor.PROBLEM
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
