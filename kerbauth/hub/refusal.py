"""A ticket failure that stops a spawn, in the form JupyterHub shows to the user."""

from tornado import web

from kerbauth.core.errors import TicketError

__all__ = ["SpawnRefused", "spawn_refusal"]


class SpawnRefused(TicketError, web.HTTPError):
    """A TicketError that stopped a spawn, raised as the HTTPError JupyterHub expects.

    JupyterHub shows the user an HTTPError's message on its spawn page (an
    error of another kind becomes "Unhandled error starting server") and its
    REST API answers with it. The message is the user's text only; ``cause``
    and ``str()`` keep the full cause for the log. 503 when trying again
    later may work, 500 otherwise.
    """

    def __init__(self, error):
        status = 503 if error.cause in ("kdc_unreachable", "timeout") else 500
        web.HTTPError.__init__(self, status, error.jupyterhub_message)
        self.cause = error.cause
        self.detail = error.detail

    def __str__(self):
        return f"{self.cause}: {self.detail}"


def spawn_refusal(error):
    """The :class:`SpawnRefused` for ``error``; an HTTPError already is one, as it is."""
    return error if isinstance(error, web.HTTPError) else SpawnRefused(error)
