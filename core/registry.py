"""The registry of components, keyed by (kind, name).

Plugins never touch it directly: their hooks receive a :class:`Registrar`
bound to the plugin, and everything they add is recorded with the plugin
that added it (so errors and ``w2vrun plugins`` can say who provides what).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import attrs

from .errors import ConfigError, MissingDependencyError, did_you_mean
from .interfaces import CORE_KINDS

#: Version of the registration API. A plugin declares the version it was
#: written for (``W2V_PLUGIN_API`` in its module); a different major is refused.
PLUGIN_API_VERSION = (2, 0)


@attrs.frozen(kw_only=True)
class PluginInfo:
    """Who registered something: entry-point name, module, distribution and version."""

    name: str
    module: str
    dist: str = "w2v"
    version: str = ""

    def describe(self) -> str:
        return f"{self.name} ({self.dist} {self.version}, {self.module})".replace("  ", " ")


#: Import names of distributions whose module name is not the distribution name with
#: ``-`` read as ``_`` (a plugin may also write ``"dist:module"``).
IMPORT_NAMES = {"flashlight-text": "flashlight.lib.text", "pyyaml": "yaml",
                "scikit-learn": "sklearn", "pillow": "PIL"}


@attrs.frozen(kw_only=True)
class Requirement:
    """An optional dependency: the distribution pip installs and the module it provides."""

    package: str
    module: str

    @classmethod
    def parse(cls, spec: str) -> "Requirement":
        """``"kenlm"``, ``"flashlight-text"`` (import name from :data:`IMPORT_NAMES`) or
        ``"dist:module"``."""
        package, _, module = spec.partition(":")
        package = package.strip()
        return cls(package=package, module=module.strip() or IMPORT_NAMES.get(
            package.lower(), package.replace("-", "_")))

    def installed(self) -> bool:
        import importlib

        try:
            importlib.import_module(self.module)
        except ImportError:
            return False
        return True


@attrs.frozen(kw_only=True)
class Registration:
    """One registered component.

    Attributes:
        kind: component kind (``encoder``, ``quantizer``, ..., or a plugin-declared kind).
        name: the name recipes use (``name: gumbel``).
        cls: the class; built with ``cls.from_config(config, upstream, **context)``.
        config_cls: attrs class its YAML section is structured into.
        plugin: who registered it.
        smoke: a small config mapping (without ``name``) the automatic
            component test builds and runs; None for components that need
            external resources.
        help: one line for ``w2vrun list``.
        requires: optional packages the component imports (checked by
            :meth:`check_requirements` before it is built, and by ``--dry-run``).
        extra: the extra of the plugin's distribution that installs them (``decode``).
    """

    kind: str
    name: str
    cls: type
    config_cls: type
    plugin: PluginInfo
    smoke: Mapping[str, Any] | None = None
    help: str = ""
    requires: tuple[Requirement, ...] = ()
    extra: str | None = None

    def missing_requirements(self) -> list[Requirement]:
        """The declared requirements that cannot be imported."""
        return [r for r in self.requires if not r.installed()]

    def check_requirements(self, *, where: str | None = None, key: str | None = None) -> None:
        """Raise a :class:`MissingDependencyError` (exit 2) naming the packages to install."""
        missing = self.missing_requirements()
        if missing:
            raise MissingDependencyError(
                [r.package for r in missing], self.extra, dist=self.plugin.dist,
                component=f"the {self.kind} `{self.name}`", where=where, key=key)


@attrs.frozen(kw_only=True)
class KindInfo:
    name: str
    base: type | None
    help: str
    plugin: PluginInfo | None = None


@attrs.frozen(kw_only=True)
class Importer:
    """A checkpoint format: ``detect(path) -> bool``, ``load(path, **kw) -> model``."""

    name: str
    detect: Callable[[Any], bool]
    load: Callable[..., Any]
    plugin: PluginInfo
    help: str = ""


@attrs.frozen(kw_only=True)
class Corpus:
    """A named corpus recipes can point at as ``NAME:SPLIT`` (``demo:train``):
    ``resolve(split) -> manifest path``, building the corpus first if needed."""

    name: str
    resolve: Callable[[str], Any]
    plugin: PluginInfo
    help: str = ""


@attrs.frozen(kw_only=True)
class Command:
    """A ``w2vrun`` sub-command: ``configure(argparse parser)``, ``run(args) -> int``."""

    name: str
    configure: Callable[[Any], None]
    run: Callable[[Any], int | None]
    plugin: PluginInfo
    help: str = ""


class Registry:
    """Components, kinds, checkpoint importers and commands registered by plugins."""

    def __init__(self) -> None:
        self.kinds: dict[str, KindInfo] = {
            k: KindInfo(name=k, base=b, help=(b.__doc__ or "").strip().splitlines()[0])
            for k, b in CORE_KINDS.items()
        }
        self.components: dict[tuple[str, str], Registration] = {}
        self.importers: dict[str, Importer] = {}
        self.commands: dict[str, Command] = {}
        self.corpora: dict[str, Corpus] = {}
        #: the stage (and its plugin) a recipe without ``stages:`` runs
        self.default_stage: tuple[str, PluginInfo] | None = None

    # ---------------------------------------------------------------- adding
    def add_kind(self, name: str, base: type | None, help: str, plugin: PluginInfo) -> None:
        if name in self.kinds:
            if self.kinds[name].base is base:
                return
            raise ConfigError(
                f"Component kind `{name}` is declared twice: by {self._owner(self.kinds[name].plugin)} "
                f"and by {plugin.describe()}.")
        self.kinds[name] = KindInfo(name=name, base=base, help=help, plugin=plugin)

    def add(self, reg: Registration) -> None:
        if reg.kind not in self.kinds:
            raise ConfigError(
                f"Plugin {reg.plugin.describe()} registers {reg.kind} `{reg.name}`, but no plugin "
                f"declares the component kind `{reg.kind}`.",
                hint=did_you_mean(reg.kind, list(self.kinds), "kinds"))
        base = self.kinds[reg.kind].base
        if base is not None and not issubclass(reg.cls, base):
            raise ConfigError(
                f"Plugin {reg.plugin.describe()} registers {reg.kind} `{reg.name}` as "
                f"{reg.cls.__module__}.{reg.cls.__qualname__}, which does not subclass "
                f"{base.__module__}.{base.__qualname__}.")
        if not attrs.has(reg.config_cls):
            raise ConfigError(
                f"Plugin {reg.plugin.describe()} registers {reg.kind} `{reg.name}` with config "
                f"{reg.config_cls!r}, which is not an attrs class.")
        key = (reg.kind, reg.name)
        if key in self.components:
            old = self.components[key]
            raise ConfigError(
                f"Two plugins register the {reg.kind} `{reg.name}`: "
                f"{old.plugin.describe()} ({old.cls.__module__}.{old.cls.__qualname__}) and "
                f"{reg.plugin.describe()} ({reg.cls.__module__}.{reg.cls.__qualname__}).",
                hint="Rename one of them, or disable one plugin with W2V_DISABLE_PLUGINS=name.")
        self.components[key] = reg

    # -------------------------------------------------------------- looking up
    def names(self, kind: str) -> list[str]:
        return sorted(n for k, n in self.components if k == kind)

    def of_kind(self, kind: str) -> list[Registration]:
        return [self.components[(kind, n)] for n in self.names(kind)]

    def name_of(self, kind: str, component: object) -> str | None:
        """The registered name of a built ``kind`` component (by its exact class), or None."""
        names = [r.name for r in self.of_kind(kind) if r.cls is type(component)]
        return names[0] if names else None

    def get(self, kind: str, name: str, *, where: str | None = None, key: str | None = None
            ) -> Registration:
        """The registration of ``kind`` ``name``, or a ConfigError with suggestions."""
        if kind not in self.kinds:
            raise ConfigError(f"unknown component kind `{kind}`.", where=where, key=key,
                              hint=did_you_mean(kind, list(self.kinds), "kinds"))
        reg = self.components.get((kind, name))
        if reg is not None:
            return reg
        names = self.names(kind)
        providers = "; ".join(f"`{r.name}` from {r.plugin.name}" for r in self.of_kind(kind))
        hint = did_you_mean(name, names, f"{kind} names")
        if providers:
            hint += f" Provided by: {providers}."
        raise ConfigError(f"unknown {kind} `{name}`.", where=where, key=key, hint=hint)

    def all(self) -> Iterable[Registration]:
        return (self.components[k] for k in sorted(self.components))

    @staticmethod
    def _owner(plugin: PluginInfo | None) -> str:
        return plugin.describe() if plugin else "the core"


class Registrar:
    """What a plugin's hook receives: adds things to the registry on its behalf."""

    def __init__(self, registry: Registry, plugin: PluginInfo) -> None:
        self._registry = registry
        self.plugin = plugin

    def add_kind(self, name: str, base: type | None = None, help: str = "") -> None:
        """Declare a component kind beyond the core ones (``generator``, ...)."""
        self._registry.add_kind(name, base, help, self.plugin)

    def add_component(self, kind: str, name: str, cls: type, config: type | None = None, *,
                      smoke: Mapping[str, Any] | None = None, help: str = "",
                      requires: Sequence[str] = (), extra: str | None = None) -> None:
        """Register ``cls`` as ``kind`` ``name``; ``config`` defaults to ``cls.Config``.

        ``requires`` lists the optional packages the component imports, by the name pip
        installs (``["flashlight-text"]``; ``"dist:module"`` where the import name differs
        and is not in :data:`IMPORT_NAMES`); ``extra`` names the extra of the plugin's
        distribution that installs them. A missing one stops ``--dry-run`` and a run before
        its first stage, with the install command."""
        config_cls = config if config is not None else getattr(cls, "Config", None)
        if config_cls is None:
            raise ConfigError(f"Plugin {self.plugin.describe()} registers {kind} `{name}` "
                              f"without a config class (set `{cls.__name__}.Config`).")
        doc = help or ((cls.__doc__ or "").strip().splitlines() or [""])[0]
        if isinstance(requires, str):
            requires = [requires]
        self._registry.add(Registration(
            kind=kind, name=name, cls=cls, config_cls=config_cls, plugin=self.plugin,
            smoke=smoke, help=doc, requires=tuple(Requirement.parse(r) for r in requires),
            extra=extra))

    def add_stage(self, name: str, cls: type, config: type | None = None, *, help: str = "",
                  requires: Sequence[str] = (), extra: str | None = None,
                  default: bool = False) -> None:
        """Register a stage; ``default``: the stage a recipe without ``stages:`` runs."""
        self.add_component("stage", name, cls, config, smoke=None, help=help,
                           requires=requires, extra=extra)
        if default:
            old = self._registry.default_stage
            if old is not None:
                raise ConfigError(f"Two plugins declare a default stage: `{old[0]}` "
                                  f"({old[1].describe()}) and `{name}` "
                                  f"({self.plugin.describe()}).")
            self._registry.default_stage = (name, self.plugin)

    def _claim(self, table: dict[str, Any], name: str, what: str) -> None:
        """A ConfigError naming both plugins when ``name`` is already in ``table``."""
        if name in table:
            raise ConfigError(f"Two plugins register the {what}: {table[name].plugin.describe()} "
                              f"and {self.plugin.describe()}.",
                              hint="Rename one of them, or disable one plugin with "
                                   "W2V_DISABLE_PLUGINS=name.")

    def add_importer(self, name: str, detect: Callable[[Any], bool], load: Callable[..., Any], *,
                     help: str = "") -> None:
        """Register a checkpoint format for :func:`w2v.load_pretrained`."""
        self._claim(self._registry.importers, name, f"checkpoint format `{name}`")
        self._registry.importers[name] = Importer(name=name, detect=detect, load=load,
                                                  plugin=self.plugin, help=help)

    def add_corpus(self, name: str, resolve: Callable[[str], Any], *, help: str = "") -> None:
        """Register a corpus recipes reach as ``NAME:SPLIT`` in ``data:`` paths."""
        self._claim(self._registry.corpora, name, f"corpus `{name}`")
        self._registry.corpora[name] = Corpus(name=name, resolve=resolve, plugin=self.plugin,
                                              help=help)

    def add_command(self, name: str, configure: Callable[[Any], None],
                    run: Callable[[Any], int | None], *, help: str = "") -> None:
        """Register a ``w2vrun NAME ...`` sub-command."""
        self._claim(self._registry.commands, name, f"command `w2vrun {name}`")
        self._registry.commands[name] = Command(name=name, configure=configure, run=run,
                                                plugin=self.plugin, help=help)
