"""A ticket failure that stops a spawn, in the form JupyterHub shows to the user.

On JupyterHub 6 a refused spawn is a :class:`jupyterhub.spawner.SpawnException`:
JupyterHub logs it without a traceback, counts it in
``jupyterhub_server_spawn_duration_seconds`` with ``status="failure"`` and
our ``reason`` label (a refusal the user or the admin can act on, not an
error of the hub; it does not count towards ``consecutive_failure_limit``),
shows the user its message and logs its ``log_message``. JupyterHub 5 has no
SpawnException: there the refusal is the plain HTTPError it always was.
"""

from tornado import web

from kerbauth.core.errors import TicketError

try:
    from jupyterhub.spawner import SpawnException
except ImportError:  # JupyterHub 5
    SpawnException = None

__all__ = ["SpawnRefused", "reason_label", "spawn_refusal"]


def reason_label(cause):
    """The ``reason`` of a refused spawn in JupyterHub's metrics: ``kerberos-`` and the
    cause (:data:`kerbauth.core.errors.CAUSES`), e.g. ``kerberos-kdc-unreachable``."""
    return "kerberos-" + cause.replace("_", "-")


class SpawnRefused(TicketError, SpawnException or web.HTTPError):
    """A TicketError that stopped a spawn, raised as JupyterHub expects a refusal.

    A SpawnException on JupyterHub 6, an HTTPError on 5.x. JupyterHub shows
    the user its ``jupyterhub_message`` on the spawn page, in the spawn's
    progress events and in the REST API's answer (an error of another kind
    becomes "Unhandled error starting server"). The message is the user's
    text only; ``cause``, ``log_message`` (JupyterHub 6) and ``str()`` keep
    the full cause for the log. 503 when trying again later may work, 500
    otherwise.
    """

    def __init__(self, error):
        status = 503 if error.cause in ("kdc_unreachable", "timeout") else 500
        if SpawnException is None:
            web.HTTPError.__init__(self, status, error.jupyterhub_message)
        else:
            SpawnException.__init__(
                self,
                error.jupyterhub_message,
                reason=reason_label(error.cause),
                log_message=f"{error.cause}: {error.detail}",
                status_code=status,
            )
        self.cause = error.cause
        self.detail = error.detail
        self._user_message = error.jupyterhub_message  # a subclass's own, kept

    @property
    def jupyterhub_message(self):
        return self._user_message

    def __str__(self):
        if SpawnException is None:
            return f"{self.cause}: {self.detail}"
        # "500 SpawnRefused(reason=kerberos-keytab): keytab: keytab /path: does not exist"
        return SpawnException.__str__(self)


def spawn_refusal(error):
    """The :class:`SpawnRefused` for ``error``; an HTTPError already is one, as it is."""
    return error if isinstance(error, web.HTTPError) else SpawnRefused(error)
