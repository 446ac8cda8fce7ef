"""The trait types of kerbauth's options, in one place.

Each checks its value when it is set (at config load), and a refusal is a
:class:`~kerbauth.core.errors.ConfigError` naming the full option
(``KerberosTickets.timeout``) as it is written in ``jupyterhub_config.py``.
"""

from traitlets import Float, Integer

from kerbauth.core.errors import ConfigError

__all__ = ["ConfigError", "Seconds", "Count", "option_name"]


def option_name(trait):
    """``Class.option`` of ``trait``, as the configuration file spells it."""
    owner = getattr(trait, "this_class", None)
    return f"{owner.__name__}.{trait.name}" if owner is not None else trait.name


class Seconds(Float):
    """A duration in seconds: positive, or zero too when ``allow_zero`` (0 then means "off")."""

    info_text = "a number of seconds"

    def __init__(self, default_value, *, allow_zero=False, **kwargs):
        self.allow_zero = allow_zero
        super().__init__(default_value, **kwargs)

    def validate(self, obj, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{option_name(self)} must be a number of seconds, not {value!r}")
        value = float(value)
        if value != value or value < 0 or (value == 0 and not self.allow_zero):
            least = "zero or more" if self.allow_zero else "a positive number of"
            raise ConfigError(f"{option_name(self)} must be {least} seconds, not {value!r}")
        return value


class Count(Integer):
    """A whole number of at least ``minimum``."""

    def __init__(self, default_value, *, minimum=0, **kwargs):
        self.minimum = minimum
        super().__init__(default_value, **kwargs)

    def validate(self, obj, value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{option_name(self)} must be a whole number, not {value!r}")
        if value < self.minimum:
            raise ConfigError(f"{option_name(self)} must be at least {self.minimum}, not {value}")
        return value
