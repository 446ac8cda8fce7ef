"""The public data files some tests read, kept outside the repository.

One setting finds them: ``KERBAUTH_TESTDATA``, by default ``../shared/testdata``
beside the checkout. It holds ``planetexpress/`` (the LDAP directory
jupyterhub-ldapauthenticator's own tests run against) and ``z2jh-4.4.0/`` (the
zero-to-jupyterhub chart's ``values.schema.yaml`` and ``values.yaml``). They
are other projects' files, read where they are, never copied in here.

Where a folder is missing (a clone used elsewhere), ``testdata(name)`` skips
the test saying what is missing and how to point at it; with
``KERBAUTH_REQUIRE_TESTDATA=1`` (.ci/run sets it) a missing folder fails the
test instead, so CI always runs these tests.
"""

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT = os.path.join(os.path.dirname(REPO), "shared", "testdata")


def testdata_root():
    return os.environ.get("KERBAUTH_TESTDATA") or DEFAULT


def testdata(name):
    """The path of the data folder ``name``; skips (or fails, in CI) when it is missing."""
    path = os.path.join(testdata_root(), name)
    if os.path.isdir(path):
        return path
    message = (
        f"test data {name}/ is missing: no directory {path} "
        "(set KERBAUTH_TESTDATA to the folder holding it)"
    )
    if os.environ.get("KERBAUTH_REQUIRE_TESTDATA") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
