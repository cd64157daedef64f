"""Every registered component is built one way (the ``Component`` docstring): the constructor
takes its ``Config`` first, then only wiring, so each setting's default lives in one place.

Parametrised over the registry at collection time, so a new plugin's components are held to
the same rule the moment they register.
"""

from __future__ import annotations

import inspect

import attrs
import pytest
from torch import nn

from w2v.interfaces import Component
from w2v.plugin_manager import registry

REGISTERED = sorted({(kind, name): reg.cls for (kind, name), reg in registry().components.items()
                     }.items())


def own_constructor(cls: type) -> inspect.Signature | None:
    """The component's constructor signature without ``self``, or None when it inherits a
    generic one (``nn.Module``'s or ``object``'s)."""
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            if klass in (nn.Module, object):
                return None
            sig = inspect.signature(klass.__init__)
            return sig.replace(parameters=list(sig.parameters.values())[1:])
    return None


@pytest.mark.parametrize("key,cls", REGISTERED, ids=[f"{k}:{n}" for (k, n), _ in REGISTERED])
def test_constructor_takes_the_config_first_and_repeats_no_setting(key, cls):
    settings = [f.name for f in attrs.fields(cls.Config)] if attrs.has(cls.Config) else []
    sig = own_constructor(cls)
    if sig is None:    # nothing to wire and nothing to set: InfoNCE
        assert not settings, f"{cls.__name__} has settings but no constructor taking its Config"
        return
    params = list(sig.parameters.values())
    assert params and params[0].name == "config", (
        f"{cls.__name__}{sig}: the config must be the first constructor argument")
    assert params[0].default is inspect.Parameter.empty, (
        f"{cls.__name__}: the config has no default (its defaults live in {cls.Config.__name__})")
    repeated = sorted({p.name for p in params[1:]} & set(settings))
    assert not repeated, (f"{cls.__name__}{sig} takes settings of {cls.Config.__name__} as "
                          f"arguments too: {repeated}")


def test_the_default_from_config_builds_from_the_config_alone():
    class Settings:
        pass

    class Plain(Component):
        Config = Settings

        def __init__(self, config):
            self.config = config

    config = Settings()
    assert Plain.from_config(config).config is config
