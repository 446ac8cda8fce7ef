"""Packaging: a plain install compiles nothing; the wheel carries the whole package; what
kerbauth imports is declared, and `tox -e lowest` pins exactly the lower bounds."""

import ast
import json
import subprocess
import sys
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PIP = [sys.executable, "-m", "pip"]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# The published extras (development tools are dependency groups, never published).
EXTRAS = {"krb5", "spnego"}


def declared():
    """The requirements a user's install can bring: the dependencies and the extras."""
    extras = PROJECT["optional-dependencies"]
    return [Requirement(r) for r in PROJECT["dependencies"] + sum(extras.values(), [])]


def third_party_imports():
    """{distribution: [file:line, ...]} of every import under kerbauth/ outside the stdlib."""
    distributions = packages_distributions()
    found = {}
    for path in sorted((ROOT / "kerbauth").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top in sys.stdlib_module_names or top == "kerbauth":
                    continue
                (dist, *_) = distributions.get(top, [top])
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                found.setdefault(canonicalize_name(dist), []).append(where)
    return found


def test_what_kerbauth_imports_is_declared_and_nothing_more():
    imported = third_party_imports()
    names = {canonicalize_name(r.name) for r in declared()}
    undeclared = {dist: where for dist, where in imported.items() if dist not in names}
    assert not undeclared, f"imported but not in pyproject.toml's dependencies: {undeclared}"
    assert names <= set(imported), f"declared but never imported: {names - set(imported)}"


def test_only_the_krb5_and_spnego_extras_are_published():
    assert set(PROJECT["optional-dependencies"]) == EXTRAS
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]
    assert {"test", "docs", "lint", "bench"} <= set(groups)


def lowest_constraints():
    path = ROOT / "tests" / "lowest-constraints.txt"
    lines = [line.strip() for line in path.read_text().splitlines()]
    return sorted(line for line in lines if line and not line.startswith("#"))


def test_the_lowest_environment_pins_the_lower_bounds():
    expected = []
    for requirement in declared():
        (lowest,) = [s.version for s in requirement.specifier if s.operator == ">="]
        expected.append(f"{canonicalize_name(requirement.name)}=={lowest}")
    pinned = [
        f"{canonicalize_name(name)}=={version}"
        for name, version in (line.split("==") for line in lowest_constraints())
    ]
    assert sorted(pinned) == sorted(expected), "tests/lowest-constraints.txt: " + " ".join(expected)


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
    assert "gssapi" not in names, "the GSSAPI bindings are only in the [spnego] extra"
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
    # With the doctor's Java program, which the doctor runs from the package.
    modules = [*(ROOT / "kerbauth").rglob("*.py"), *(ROOT / "kerbauth").rglob("*.java")]
    assert len(modules) > 20
    for module in modules:
        assert module.relative_to(ROOT).as_posix() in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "kerberos-pam = kerbauth:KerberosPAMAuthenticator" in text
    assert "kerberos-ldap = kerbauth:KerberosLDAPAuthenticator" in text
    assert "kerberos-kdc = kerbauth:KerberosKDCAuthenticator" in text
    metadata = next(n for n in names if n.endswith("METADATA"))
    lines = zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
    assert {
        line.partition(": ")[2] for line in lines if line.startswith("Provides-Extra:")
    } == EXTRAS
    assert any(
        line.startswith("Requires-Dist: krb5") and "extra == 'krb5'" in line for line in lines
    ), "the in-process backend's bindings come with kerbauth[krb5]"
