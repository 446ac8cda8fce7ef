"""What can go wrong on the server's side of the ``fetch`` delivery."""

__all__ = ["FetchError", "UnsafeCacheTarget"]


class FetchError(Exception):
    """A ticket could not be fetched or written; the message says why."""


class UnsafeCacheTarget(FetchError):
    """``KRB5CCNAME`` names a place that is not (only) the server's own; never written to.

    The message names the path, what was found there (its owner, a link)
    and what to do.
    """
