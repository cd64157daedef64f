"""Configs: attrs field helpers, strict structuring, recipes."""

from .fields import check, choice, component, components, field, real, size
from .spec import ComponentSpec

__all__ = ["ComponentSpec", "check", "choice", "component", "components", "field", "real", "size"]
