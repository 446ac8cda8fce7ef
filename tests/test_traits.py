"""kerbauth's trait types refuse a bad value at config load, naming the option."""

import pytest
from traitlets.config import Config, Configurable

from kerbauth.core.errors import ConfigError
from kerbauth.traits import Count, Seconds


class Section(Configurable):
    wait = Seconds(5.0, config=True, help="A wait.")
    delay = Seconds(0.0, allow_zero=True, config=True, help="A delay; 0 is off.")
    workers = Count(4, minimum=1, config=True, help="Workers.")


def load(**values):
    return Section(config=Config({"Section": values}))


def test_good_values_are_kept_as_numbers():
    section = load(wait=3, delay=0, workers=2)
    assert (section.wait, section.delay, section.workers) == (3.0, 0.0, 2)
    assert isinstance(section.wait, float)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"wait": 0}, "Section.wait must be a positive number of seconds, not 0.0"),
        ({"wait": -1}, "Section.wait must be a positive number of seconds, not -1.0"),
        ({"wait": float("nan")}, "Section.wait must be a positive number of seconds, not nan"),
        ({"wait": "30"}, "Section.wait must be a number of seconds, not '30'"),
        ({"wait": True}, "Section.wait must be a number of seconds, not True"),
        ({"delay": -0.5}, "Section.delay must be zero or more seconds, not -0.5"),
        ({"workers": 0}, "Section.workers must be at least 1, not 0"),
        ({"workers": 2.5}, "Section.workers must be a whole number, not 2.5"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_the_option(values, message):
    with pytest.raises(ConfigError) as info:
        load(**values)
    assert str(info.value) == message
