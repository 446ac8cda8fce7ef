"""The ``kinit`` backend: tickets from the kinit program (MIT or Heimdal).

Used when the krb5 bindings are not installed, or when a site wants its own
kinit. The keytab is handed over as an inherited descriptor (``/dev/fd/N``),
so kinit reads exactly the file kerbauth checked; no secret is put in argv or
in the environment. ``subprocess.run`` kills kinit when the timeout passes,
so a hung KDC costs at most ``timeout`` seconds.
"""

import os
import subprocess

from .errors import TicketError, cause_from_message

__all__ = ["KinitBackend"]


class KinitBackend:
    name = "kinit"

    def __init__(self, kinit_path="kinit"):
        self.kinit_path = kinit_path

    def keytab_ticket(self, principal, keytab_fd, ccache_path, timeout):
        """Write a TGT for ``principal`` from the keytab at ``keytab_fd`` into ``ccache_path``."""
        argv = [
            self.kinit_path,
            "-k",
            "-t",
            f"FILE:/dev/fd/{keytab_fd}",
            "-c",
            f"FILE:{ccache_path}",
            "--",
            principal,
        ]
        env = dict(os.environ)
        # The cache is named on the command line; an inherited KRB5CCNAME must
        # not send anything elsewhere.
        env.pop("KRB5CCNAME", None)
        try:
            result = subprocess.run(
                argv,
                env=env,
                pass_fds=(keytab_fd,),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise TicketError(
                "timeout", f"{self.kinit_path} for {principal} did not finish within {timeout} s"
            ) from None
        except OSError as e:
            raise TicketError("config", f"cannot run {self.kinit_path}: {e}") from None
        if result.returncode != 0:
            message = result.stderr.decode("utf-8", "replace").strip() or (
                f"exit status {result.returncode}"
            )
            raise TicketError(cause_from_message(message), f"{self.kinit_path}: {message}")
