"""Stopping what a fixture started: ``stop(process)``.

SIGTERM, a wait of ``deadline`` seconds for the process to end cleanly, then
SIGKILL and a wait for it to be reaped. Safe on a process that has ended.
"""

import subprocess

__all__ = ["stop"]


def stop(process, deadline=10):
    process.terminate()
    try:
        process.wait(deadline)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
