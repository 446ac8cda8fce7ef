"""What importing a module loads, asked of a fresh interpreter."""

import subprocess
import sys

# Imports the modules, then prints what they loaded, one name a line. Only `sys`
# (built in, loaded before anything) is imported first, so nothing is hidden.
PROBE = """
import sys
before = set(sys.modules)
for name in sys.argv[1:]:
    __import__(name)
print("\\n".join(sorted(set(sys.modules) - before)))
"""


def loaded_by(*names):
    """The modules that importing ``names`` loads, in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-I", "-c", PROBE, *names],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def top_level(names):
    return {name.partition(".")[0] for name in names}
