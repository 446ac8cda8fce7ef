"""``kerbauth doctor`` run as the admin runs it: the installed command, its lines parsed."""

import os
import subprocess
import sys

KERBAUTH = os.path.join(os.path.dirname(sys.executable), "kerbauth")


def run_doctor(config_file, env, *args):
    """``(exit status, {check: (status, line)}, output)``, asserting one line per check."""
    result = subprocess.run(
        [KERBAUTH, "doctor", "-f", config_file, "--timeout", "3", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    lines = {}
    for line in result.stdout.splitlines()[1:]:
        status, name, _ = line.split(maxsplit=2)
        assert status in ("ok", "problem", "skip"), result.stdout  # nothing but result lines
        lines[name] = (status, line)
    return result.returncode, lines, result.stdout + result.stderr
