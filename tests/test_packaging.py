"""Packaging: a plain install compiles nothing; the wheel carries the whole package."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIP = [sys.executable, "-m", "pip"]


def test_plain_install_needs_no_compiler(tmp_path):
    # Resolve `pip install .` as in an empty environment, without installing.
    report = tmp_path / "report.json"
    subprocess.run(
        [*PIP, "install", "-q", "--dry-run", "--ignore-installed", "--report", str(report), ROOT],
        check=True,
        capture_output=True,
    )
    install = json.loads(report.read_text())["install"]
    names = {item["metadata"]["name"].lower() for item in install}
    assert "jupyterhub" in names and "ldap3" in names and "pamela" in names
    assert "krb5" not in names, "the compiled bindings are only in the [krb5] extra"
    for item in install:
        if item["metadata"]["name"] == "kerbauth":
            continue
        url = item["download_info"]["url"]
        assert url.endswith(".whl"), f"{item['metadata']['name']} would be built from {url}"


def test_wheel_contains_every_module(tmp_path):
    subprocess.run(
        [*PIP, "wheel", "-q", "--no-deps", "-w", str(tmp_path), ROOT],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("kerbauth-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in (ROOT / "kerbauth").glob("*.py"):
        assert f"kerbauth/{module.name}" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "kerberos-pam = kerbauth:KerberosPAMAuthenticator" in text
    assert "kerberos-ldap = kerbauth:KerberosLDAPAuthenticator" in text
    metadata = next(n for n in names if n.endswith("METADATA"))
    lines = zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
    assert "Provides-Extra: krb5" in lines
    assert any(
        line.startswith("Requires-Dist: krb5") and "extra == 'krb5'" in line for line in lines
    ), "the in-process backend's bindings come with kerbauth[krb5]"
