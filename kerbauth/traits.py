"""The trait types of kerbauth's options, in one place.

Each checks its value when it is set (at config load), and a refusal is a
:class:`~kerbauth.core.errors.ConfigError` naming the full option
(``KerberosTickets.timeout``) as it is written in ``jupyterhub_config.py``.
"""

from traitlets import CaselessStrEnum, Float, Integer, List, TraitError, Unicode

from kerbauth.core.errors import ConfigError

__all__ = ["ConfigError", "Seconds", "Count", "Choice", "StringList", "option_name"]


def option_name(trait, obj=None):
    """``Class.option`` of ``trait``, as the configuration file spells it.

    A mixin whose options are written under the name of the class that uses it
    (``c.KerberosPAMAuthenticator.login_wait``, never ``c.LoginLimits``) sets
    ``options_named_by_subclass = True``: its options are then named after the
    class of ``obj``, the object being configured.
    """
    owner = getattr(trait, "this_class", None)
    if obj is not None and vars(owner or object).get("options_named_by_subclass"):
        owner = type(obj)
    return f"{owner.__name__}.{trait.name}" if owner is not None else trait.name


class Seconds(Float):
    """A duration in seconds: positive, or zero too when ``allow_zero`` (0 then means "off")."""

    info_text = "a number of seconds"

    def __init__(self, default_value, *, allow_zero=False, **kwargs):
        self.allow_zero = allow_zero
        super().__init__(default_value, **kwargs)

    def validate(self, obj, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(
                f"{option_name(self, obj)} must be a number of seconds, not {value!r}"
            )
        value = float(value)
        if value != value or value < 0 or (value == 0 and not self.allow_zero):
            least = "zero or more" if self.allow_zero else "a positive number of"
            raise ConfigError(f"{option_name(self, obj)} must be {least} seconds, not {value!r}")
        return value


class Count(Integer):
    """A whole number of at least ``minimum`` (and at most ``maximum``, if given)."""

    def __init__(self, default_value, *, minimum=0, maximum=None, **kwargs):
        self.minimum = minimum
        self.maximum = maximum
        super().__init__(default_value, **kwargs)

    def validate(self, obj, value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{option_name(self, obj)} must be a whole number, not {value!r}")
        if value < self.minimum:
            raise ConfigError(
                f"{option_name(self, obj)} must be at least {self.minimum}, not {value}"
            )
        if self.maximum is not None and value > self.maximum:
            raise ConfigError(
                f"{option_name(self, obj)} must be at most {self.maximum}, not {value}"
            )
        return value


class Choice(CaselessStrEnum):
    """One of ``values``, compared without case (and kept as written in ``values``)."""

    def validate(self, obj, value):
        try:
            return super().validate(obj, value)
        except TraitError:
            choices = ", ".join(repr(v) for v in self.values)
            raise ConfigError(
                f"{option_name(self, obj)} must be one of {choices}, not {value!r}"
            ) from None


class StringList(List):
    """A list of strings; one string is taken as a list of one."""

    def __init__(self, default_value=None, **kwargs):
        super().__init__(Unicode(), default_value=default_value or [], **kwargs)

    def validate(self, obj, value):
        if isinstance(value, str):
            value = [value]
        return super().validate(obj, value)
