"""A structured ``{name: ..., ...}`` component reference."""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen(kw_only=True)
class ComponentSpec:
    """A registered component chosen by name, with its structured config.

    Attributes:
        kind: the component kind (``quantizer``).
        name: the registered name (``gumbel``).
        config: an instance of the registration's config class.
        key: dotted key path in the recipe (``model.quantizer``), for messages.
        where: ``file:line`` of the section, for messages.
    """

    kind: str
    name: str
    config: Any
    key: str = ""
    where: str | None = attrs.field(default=None, eq=False)

    def build(self, upstream=None, **context: Any):
        """Build the component from its config and the upstream component's signal."""
        from ..errors import UserError
        from ..plugin_manager import registry

        reg = registry().get(self.kind, self.name, where=self.where, key=self.key)
        reg.check_requirements(where=self.where, key=self.key)
        try:
            return reg.cls.from_config(self.config, upstream, **context)
        except UserError as exc:
            raise exc.located(where=self.where, key=self.key) from None

    def evolve(self, **changes: Any) -> "ComponentSpec":
        """A copy with config fields changed."""
        return attrs.evolve(self, config=attrs.evolve(self.config, **changes))
