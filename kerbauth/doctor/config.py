"""Loading the hub's config as the hub would, and the checks of the options themselves.

The doctor reads a ``jupyterhub_config.py`` the way the hub does and builds
the configured authenticator from it, so every check uses the options the
hub would use.
"""

import importlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from traitlets.config import Config, PyFileConfigLoader

from kerbauth.core.backends.libkrb5 import krb5_available
from kerbauth.doctor.outcome import OK, PROBLEM
from kerbauth.hub.tickets import KerberosTickets

__all__ = [
    "ConfigNotLoaded",
    "Site",
    "load_config",
    "load_site",
    "resolve_authenticator_class",
    "ticket_backend_name",
    "check_config",
    "check_startup",
]


class ConfigNotLoaded(Exception):
    """The config file cannot be loaded or names no usable authenticator."""


@dataclass
class Site:
    """What the checks look at: the loaded config, the authenticator, the user asked about."""

    config_file: str
    config: Config
    authenticator_class: type
    authenticator: KerberosTickets  # built from the config, without starting anything
    username: str | None = None
    timeout: float = 5.0
    hadoop_conf_dir: str | None = None  # the HADOOP_CONF_DIR the hadoop check reads
    facts: dict = field(default_factory=dict)  # what one check learnt for the next ones


def load_config(path):
    """The traitlets Config of the ``jupyterhub_config.py`` at ``path``."""
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise ConfigNotLoaded(f"{path} does not exist")
    loader = PyFileConfigLoader(os.path.basename(path), path=os.path.dirname(path))
    try:
        return loader.load_config()
    except Exception as e:
        raise ConfigNotLoaded(f"{path} cannot be loaded: {type(e).__name__}: {e}") from None


def resolve_authenticator_class(value):
    """The class ``JupyterHub.authenticator_class`` names (a class, entry point or dotted path)."""
    if isinstance(value, type):
        return value
    name = str(value)
    for ep in entry_points(group="jupyterhub.authenticators"):
        if ep.name == name:
            return ep.load()
    module, _, attribute = name.rpartition(".")
    if not module:
        raise ConfigNotLoaded(
            f"JupyterHub.authenticator_class {name!r} is no installed authenticator"
        )
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as e:
        raise ConfigNotLoaded(
            f"JupyterHub.authenticator_class {name!r} cannot be imported: {e}"
        ) from None


def load_site(config_file, username=None, timeout=5.0, hadoop_conf_dir=None):
    """A :class:`Site` for ``config_file``; ConfigNotLoaded when the hub could not use it either."""
    config = load_config(config_file)
    if "authenticator_class" not in config.JupyterHub:
        raise ConfigNotLoaded(
            "JupyterHub.authenticator_class is not set (the hub would use PAM without kerbauth)"
        )
    cls = resolve_authenticator_class(config.JupyterHub.authenticator_class)
    if not (isinstance(cls, type) and issubclass(cls, KerberosTickets)):
        raise ConfigNotLoaded(
            f"JupyterHub.authenticator_class is {cls!r}, not a kerbauth authenticator"
            ' ("kerberos-pam" or "kerberos-ldap")'
        )
    try:
        # The constructor starts nothing (no backend, directory or task): the
        # hub's start() does, and check_startup runs it on an instance of its own.
        authenticator = cls(config=config)
    except Exception as e:
        raise ConfigNotLoaded(f"{cls.__name__} refuses this configuration: {e}") from None
    if username is not None:
        username = authenticator.normalize_username(username)
    return Site(
        os.path.abspath(config_file),
        config,
        cls,
        authenticator,
        username,
        timeout,
        hadoop_conf_dir,
    )


def ticket_backend_name(authenticator):
    """The backend the hub would use: "krb5" or "kinit"."""
    return authenticator.backend or ("krb5" if krb5_available() else "kinit")


def check_config(site):
    a = site.authenticator
    names = {
        ep.value.split(":")[-1]: ep.name for ep in entry_points(group="jupyterhub.authenticators")
    }
    shown = names.get(site.authenticator_class.__name__, site.authenticator_class.__name__)
    source = "the login password" if a.password_tickets else f"keytabs {a.keytab_template}"
    backend = ticket_backend_name(a)
    return (
        OK,
        f"{shown}, tickets from {source} through the {backend} backend",
        "",
    )


def check_startup(site):
    """The hub's own start-up checks, on a real instance (a private ``ccache_dir`` if absent).

    The instance is started as the hub starts it (``start``: the options,
    the backend, the cache directory) and its backend closed again.
    """
    config = Config(site.config)
    private = None
    if not os.path.isdir(site.authenticator.ccache_dir):
        private = tempfile.mkdtemp(prefix="kerbauth-doctor-")
        config[site.authenticator_class.__name__].ccache_dir = os.path.join(private, "cc")
    try:
        instance = site.authenticator_class(config=config)
        instance.start()
    except Exception as e:
        return (PROBLEM, f"the hub would refuse to start: {e}", "fix the option the message names")
    else:
        instance.close()
    finally:
        if private:
            shutil.rmtree(private, ignore_errors=True)
    return (OK, "the hub's start-up checks of these options pass", "")
