"""The plugin manager and the registry of model types, parameterizations and guide families."""

from __future__ import annotations

import difflib
import functools

import pluggy

from scribe import hookspecs

PROJECT = "scribe"
hookimpl = pluggy.HookimplMarker(PROJECT)


@functools.cache
def get_plugin_manager() -> pluggy.PluginManager:
    """Load every plugin of the ``scribe`` entry-point group, built-ins included."""
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.load_setuptools_entrypoints(PROJECT)
    # An implementation of a hook scribe does not define is a plugin bug: fail loudly.
    manager.check_pending()
    return manager


def reload_plugins() -> pluggy.PluginManager:
    """Forget loaded plugins and load the entry points again (e.g. after an install)."""
    get_plugin_manager.cache_clear()
    _registry.cache_clear()
    return get_plugin_manager()


def _collect(results, kind: str) -> dict:
    registry = {}
    for group in results:
        for item in group or ():
            if item.name in registry:
                raise ValueError(f"two plugins register the {kind} '{item.name}'")
            registry[item.name] = item
    return dict(sorted(registry.items()))


@functools.cache
def _registry() -> tuple[dict, dict, dict]:
    hook = get_plugin_manager().hook
    return (
        _collect(hook.scribe_model_types(), "model type"),
        _collect(hook.scribe_parameterizations(), "parameterization"),
        _collect(hook.scribe_guide_families(), "guide family"),
    )


def model_types() -> dict:
    """``{name: ModelType}`` of every registered model type."""
    return _registry()[0]


def parameterizations() -> dict:
    """``{name: Parameterization}`` of every registered parameterization."""
    return _registry()[1]


def guide_families() -> dict:
    """``{name: GuideFamily}`` of every registered guide family."""
    return _registry()[2]


def available_model_types() -> list[str]:
    """Names of the registered model types, plugins' included."""
    return list(model_types())


def available_parameterizations() -> list[str]:
    """Names of the registered parameterizations, plugins' included."""
    return list(parameterizations())


def available_guide_families() -> list[str]:
    """Names of the registered guide families, plugins' included."""
    return list(guide_families())


def unknown_name_message(kind: str, name: str, valid: list[str]) -> str:
    """Error text naming the valid choices and the closest match."""
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown {kind} '{name}'. Valid choices: {', '.join(valid)}{hint}"


def lookup_model_type(name: str):
    types = model_types()
    if name not in types:
        raise ValueError(unknown_name_message("model type", name, list(types)))
    return types[name]


def lookup_parameterization(name: str):
    found = parameterizations()
    if name not in found:
        raise ValueError(unknown_name_message("parameterization", name, list(found)))
    return found[name]


def lookup_guide_family(name: str):
    found = guide_families()
    if not isinstance(name, str) or name not in found:
        raise ValueError(unknown_name_message("guide family", name, list(found)))
    return found[name]
