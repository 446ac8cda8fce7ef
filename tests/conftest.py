"""Every module under tests/support/ is a fixture plugin (realm, hub, users, slapd, ...)."""

from pathlib import Path

import pytest

# Support modules import each other (edge -> realm -> ports), so some are imported
# before pytest registers them as plugins; mark the whole package for assertion
# rewriting first, so their asserts report values too.
pytest.register_assert_rewrite("support")

pytest_plugins = sorted(
    f"support.{path.stem}"
    for path in (Path(__file__).parent / "support").glob("*.py")
    if path.stem != "__init__"
)
