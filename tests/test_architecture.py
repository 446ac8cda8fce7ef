"""The architecture holds: each program loads only its own part, and each module stays small.

kerbauth is three programs in one package (docs/architecture.md): the hub
(kerbauth.hub, kerbauth.auth), the user's server (kerbauth.server, with the
``kerbauth-fetch`` command) and the admin's ``kerbauth doctor``, over a ticket
core (kerbauth.core) that all of them use. Every rule is checked twice:

- at run time, by importing in a fresh interpreter (``python -I``) and reading
  ``sys.modules``, which catches what a module pulls in through others;
- in the source, by reading every import statement (also those inside
  functions, which run only later and which an import alone never sees).
"""

import ast
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

import kerbauth
import kerbauth.core
from support.imports import loaded_by, top_level

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "kerbauth"

# What the user's server never loads: the hub, its database, its login modes, and
# the configuration and web frameworks the hub is built on.
NOT_ON_THE_SERVER = {"jupyterhub", "sqlalchemy", "pamela", "ldap3", "traitlets", "tornado"}
# What the ticket core never loads: it is plain functions and classes.
NOT_IN_THE_CORE = {"jupyterhub", "traitlets", "tornado"}
# The only library outside the standard library the core may use (optional: pykrb5).
CORE_LIBRARIES = {"krb5"}

# Modules above the line budget, each with its own limit and why. Keep it short:
# an entry that is no longer needed (the module shrank or is gone) fails the test.
LINE_BUDGET = 420
OVER_BUDGET: dict[str, tuple[int, str]] = {}


def walk(package):
    """Every module of a package, subpackages included, by its dotted name."""
    found = [package.__name__]
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
        found.append(info.name)
    return sorted(found)


def modules_under(folder):
    """(dotted name, path) of every module in a folder of kerbauth, from the files."""
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def imports_in(name, path):
    """The absolute name of every module an import statement in the file names."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            yield module, node.lineno
            # `from kerbauth import auth` names the subpackage in the alias.
            for alias in node.names:
                yield f"{module}.{alias.name}", node.lineno


def fetch_command_module():
    """Where ``kerbauth-fetch``'s main lives, as pyproject.toml declares it."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    return scripts["kerbauth-fetch"].partition(":")[0]


def server_extensions():
    """The server extensions the installed jupyter-config enables."""
    config = ROOT / "jupyter-config" / "jupyter_server_config.d" / "kerbauth.json"
    return sorted(json.loads(config.read_text())["ServerApp"]["jpserver_extensions"])


SERVER_ENTRIES = sorted({*server_extensions(), fetch_command_module()})


def test_the_server_entries_are_the_server_package():
    # The two ways in on the user's side: the server extension and kerbauth-fetch.
    assert "kerbauth.server" in SERVER_ENTRIES
    assert all(entry.startswith("kerbauth.server") for entry in SERVER_ENTRIES)


@pytest.mark.parametrize("entry", SERVER_ENTRIES)
def test_the_server_side_loads_nothing_of_the_hub(entry):
    loaded = loaded_by(entry)
    assert entry in loaded
    assert not top_level(loaded) & NOT_ON_THE_SERVER, sorted(
        name for name in loaded if name.partition(".")[0] in NOT_ON_THE_SERVER
    )
    assert not {name for name in loaded if re.match(r"kerbauth\.(hub|auth|doctor)\b", name)}


IMPORT_TIME = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$")


@pytest.mark.parametrize("entry", SERVER_ENTRIES)
def test_importtime_of_the_server_side_shows_no_hub_package(entry):
    # The issue's own check: `python -X importtime -c "import kerbauth.server"`.
    result = subprocess.run(
        [sys.executable, "-I", "-X", "importtime", "-c", f"import {entry}"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    imported = [m.group(1) for m in map(IMPORT_TIME.match, result.stderr.splitlines()) if m]
    assert entry in imported, result.stderr[-2000:]
    assert not top_level(imported) & NOT_ON_THE_SERVER


def test_the_server_side_source_imports_only_the_core_and_the_standard_library():
    for name, path in modules_under("server"):
        for module, line in imports_in(name, path):
            first = module.partition(".")[0]
            if first == "kerbauth":
                allowed = re.match(r"kerbauth\.(core|server)\b", module) or module == "kerbauth"
                assert allowed, f"{path}:{line} imports {module}"
            else:
                assert first in sys.stdlib_module_names, f"{path}:{line} imports {module}"


@pytest.mark.parametrize("module", walk(kerbauth.core))
def test_the_core_loads_no_framework(module):
    loaded = loaded_by(module)
    assert module in loaded
    assert not top_level(loaded) & NOT_IN_THE_CORE, sorted(
        name for name in loaded if name.partition(".")[0] in NOT_IN_THE_CORE
    )
    assert {name for name in loaded if name.startswith("kerbauth.")} <= {
        name for name in loaded if name.startswith("kerbauth.core")
    }


def test_the_core_source_imports_only_the_standard_library_and_pykrb5():
    for name, path in modules_under("core"):
        for module, line in imports_in(name, path):
            first = module.partition(".")[0]
            if first == "kerbauth":
                allowed = module == "kerbauth" or re.match(r"kerbauth\.core\b", module)
                assert allowed, f"{path}:{line} imports {module}"
            else:
                assert first in sys.stdlib_module_names | CORE_LIBRARIES, (
                    f"{path}:{line} imports {module}"
                )


@pytest.mark.parametrize("module", [name for name, _ in modules_under("hub")])
def test_the_hub_loads_nothing_of_the_login_modes(module):
    loaded = loaded_by(module)
    assert module in loaded
    assert not {name for name in loaded if re.match(r"kerbauth\.auth\b", name)}
    assert not {"pamela", "ldap3"} & top_level(loaded)


def test_the_hub_source_imports_nothing_of_the_login_modes():
    for name, path in modules_under("hub"):
        for module, line in imports_in(name, path):
            assert not re.match(r"kerbauth\.auth\b", module), f"{path}:{line} imports {module}"


def test_each_program_is_reached_only_from_its_own_entry():
    # The doctor and the kernelspec are the admin's commands (kerbauth.cli), the
    # server the user's server's: the hub and the core never import any of them.
    for folder in ("core", "hub", "auth"):
        for name, path in modules_under(folder):
            for module, line in imports_in(name, path):
                assert not re.match(r"kerbauth\.(doctor|spark|server|cli)\b", module), (
                    f"{path}:{line} imports {module}"
                )


@pytest.mark.parametrize(
    ("module", "other"),
    [("kerbauth.auth.pam", "ldap3"), ("kerbauth.auth.ldap", "pamela")],
)
def test_one_login_mode_loads_not_the_other(module, other):
    loaded = top_level(loaded_by(module))
    assert other not in loaded


def test_importing_the_package_loads_nothing_but_itself():
    # Every program imports `kerbauth` first: the package itself costs nothing,
    # and the names it exports are loaded on first use.
    assert loaded_by("kerbauth") == {"kerbauth"}


def test_the_package_exports_load_on_first_use():
    for name in kerbauth.__all__:
        assert getattr(kerbauth, name) is not None
    with pytest.raises(AttributeError, match="no_such_name"):
        kerbauth.no_such_name  # noqa: B018


def line_counts():
    for path in sorted(PACKAGE.rglob("*.py")):
        with path.open() as f:
            yield path.relative_to(ROOT).as_posix(), sum(1 for _ in f)


def test_every_module_fits_in_one_sitting():
    too_long = {
        path: lines
        for path, lines in line_counts()
        if lines > OVER_BUDGET.get(path, (LINE_BUDGET, ""))[0]
    }
    assert not too_long, f"modules over {LINE_BUDGET} lines (split them by concern): {too_long}"


def test_every_exception_to_the_line_budget_is_still_needed():
    counts = dict(line_counts())
    for path, (_limit, why) in OVER_BUDGET.items():
        assert why, f"{path}: say why it is longer"
        assert path in counts, f"{path} is gone: remove it from OVER_BUDGET"
        assert counts[path] > LINE_BUDGET, f"{path} fits now: remove it from OVER_BUDGET"


def documented_modules():
    """The modules docs/architecture.md's "Where each piece lives" lists, as paths."""
    found, folder = set(), None
    for line in (ROOT / "docs" / "architecture.md").read_text().splitlines():
        if heading := re.match(r"### `(kerbauth(?:\.\w+)?)`", line):
            package = heading.group(1)
            folder = "" if package == "kerbauth" else package.replace(".", "/") + "/"
        elif folder is not None and (row := re.match(r"\| `([\w/]+\.py)` \|", line)):
            found.add(folder + row.group(1))
        elif line.startswith("## ") and found:
            break
    return found


def holds_code(path):
    """Whether a module holds more than its docstring (a package's __init__ may not)."""
    body = ast.parse(path.read_text()).body
    return any(
        not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in body
    )


def test_the_architecture_page_names_every_module():
    modules = {path.relative_to(ROOT).as_posix(): path for path in PACKAGE.rglob("*.py")}
    required = {name for name, path in modules.items() if holds_code(path)}
    documented = documented_modules()
    assert not required - documented, "add to docs/architecture.md: " + " ".join(
        sorted(required - documented)
    )
    assert not documented - set(modules), "gone, remove from docs/architecture.md: " + " ".join(
        sorted(documented - set(modules))
    )
