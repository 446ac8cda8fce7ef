"""The ``kerbauth`` command."""

import argparse
import sys

from . import __version__


def main(argv=None):
    parser = argparse.ArgumentParser(prog="kerbauth", description=__doc__)
    parser.add_argument("--version", action="version", version=f"kerbauth {__version__}")
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
