"""Every module under tests/support/ is a fixture plugin (realm, hub, users, slapd, ...)."""

from pathlib import Path

pytest_plugins = sorted(
    f"support.{path.stem}"
    for path in (Path(__file__).parent / "support").glob("*.py")
    if path.stem != "__init__"
)
