"""The one plugin manager.

Built-in plugin families and third-party packages load the same way: through
the ``w2v`` entry-point group, one entry point per family. A family that
fails to import is recorded (``w2vrun plugins`` shows why) and the others
keep working. ``W2V_DISABLE_PLUGINS=a,b`` switches plugins off by entry-point
name.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import traceback
from typing import Any, Iterable

import attrs
import pluggy

from . import hookspecs
from .errors import ConfigError, UserError
from .registry import PLUGIN_API_VERSION, PluginInfo, Registrar, Registry

ENTRY_POINT_GROUP = "w2v"
HOOKS = ("w2v_register_kinds", "w2v_register_components", "w2v_register_checkpoint_formats",
         "w2v_register_commands")


@attrs.frozen(kw_only=True)
class PluginStatus:
    """One plugin as ``w2vrun plugins`` shows it."""

    info: PluginInfo
    loaded: bool
    error: str = ""
    disabled: bool = False


@attrs.define
class PluginSet:
    """The loaded plugins and the registry they filled."""

    registry: Registry
    statuses: list[PluginStatus]

    def versions(self) -> dict[str, str]:
        """``{entry point name: "dist version"}`` of the loaded plugins (stored in checkpoints)."""
        return {s.info.name: f"{s.info.dist} {s.info.version}".strip()
                for s in self.statuses if s.loaded}


def disabled_plugins() -> set[str]:
    return {p.strip() for p in os.environ.get("W2V_DISABLE_PLUGINS", "").split(",") if p.strip()}


def _entry_points() -> list[metadata.EntryPoint]:
    eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    seen: dict[str, metadata.EntryPoint] = {}
    for ep in eps:  # an editable install can list a distribution twice
        seen.setdefault(ep.name, ep)
    return sorted(seen.values(), key=lambda e: (e.dist.name != "w2v" if e.dist else True, e.name))


def _check_api(module: Any, info: PluginInfo) -> None:
    declared = getattr(module, "W2V_PLUGIN_API", None)
    if declared is None:
        raise ConfigError(f"plugin {info.describe()} does not declare `W2V_PLUGIN_API` "
                          f"(this w2v speaks {PLUGIN_API_VERSION[0]}.{PLUGIN_API_VERSION[1]}).")
    major = int(str(declared).split(".")[0])
    if major != PLUGIN_API_VERSION[0]:
        raise ConfigError(
            f"plugin {info.describe()} was written for plugin API {declared}, but this w2v "
            f"speaks {PLUGIN_API_VERSION[0]}.{PLUGIN_API_VERSION[1]}.",
            hint="Upgrade the plugin or w2v so their API versions match.")


def load_plugins(extra_modules: Iterable[tuple[str, Any]] = ()) -> PluginSet:
    """Load every entry point of the ``w2v`` group (plus ``extra_modules``, for tests)
    and run their registration hooks in order: kinds, components, formats, commands.
    """
    pm = pluggy.PluginManager("w2v")
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    statuses: list[PluginStatus] = []
    infos: dict[str, PluginInfo] = {}
    off = disabled_plugins()

    candidates: list[tuple[PluginInfo, Any]] = []
    for ep in _entry_points():
        dist = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else ""
        info = PluginInfo(name=ep.name, module=ep.value, dist=dist, version=version)
        if ep.name in off:
            statuses.append(PluginStatus(info=info, loaded=False, disabled=True,
                                         error="disabled by W2V_DISABLE_PLUGINS"))
            continue
        candidates.append((info, ep))
    for name, module in extra_modules:
        candidates.append((PluginInfo(name=name, module=getattr(module, "__name__", name),
                                      dist="(test)", version=""), module))

    for info, source in candidates:
        try:
            module = source.load() if isinstance(source, metadata.EntryPoint) else source
            _check_api(module, info)
            pm.register(module, name=info.name)
            infos[info.name] = info
        except Exception as exc:  # a broken plugin must not take the others down
            statuses.append(PluginStatus(info=info, loaded=False, error=_short_error(exc)))

    failed_in_hooks: dict[str, str] = {}
    for hook in HOOKS:
        for impl in getattr(pm.hook, hook).get_hookimpls():
            name = impl.plugin_name
            if name in failed_in_hooks:
                continue
            try:
                impl.function(registrar=Registrar(registry, infos[name]))
            except UserError:
                raise  # duplicate registrations and the like are the user's to fix
            except Exception as exc:
                failed_in_hooks[name] = _short_error(exc)
                _forget(registry, name)

    for name, info in infos.items():
        if name in failed_in_hooks:
            statuses.append(PluginStatus(info=info, loaded=False, error=failed_in_hooks[name]))
        else:
            statuses.append(PluginStatus(info=info, loaded=True))
    return PluginSet(registry=registry, statuses=statuses)


def _forget(registry: Registry, plugin: str) -> None:
    """Remove everything a failed plugin registered before its hook raised."""
    for table in (registry.components, registry.importers, registry.commands, registry.corpora):
        for key in [k for k, v in table.items() if v.plugin.name == plugin]:
            del table[key]
    for key in [k for k, v in registry.kinds.items() if v.plugin and v.plugin.name == plugin]:
        del registry.kinds[key]


def _short_error(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


_CURRENT: PluginSet | None = None


def plugins() -> PluginSet:
    """The process-wide plugin set, loaded on first use."""
    global _CURRENT
    if _CURRENT is None:
        _CURRENT = load_plugins()
    return _CURRENT


def registry() -> Registry:
    return plugins().registry


def component_name(kind: str, component: object) -> str:
    """``aggregator `gru``` for a built component, for messages that name the components
    that disagree (``aggregator GRUAggregator``, the class name, when it is not registered)."""
    name = registry().name_of(kind, component) if component is not None else None
    if name is not None:
        return f"{kind} `{name}`"
    return f"{kind} {type(component).__name__}" if component is not None else f"no {kind}"


def reset(plugin_set: PluginSet | None = None) -> None:
    """Forget (or replace) the loaded plugins; tests use this."""
    global _CURRENT
    _CURRENT = plugin_set
