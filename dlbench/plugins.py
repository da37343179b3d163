"""Plugin manager: entry points, ``--plugins-dir`` files, the disable list and the registries.

Discovery order: entry points of group ``dlbench`` (unless ``DLBENCH_DISABLE_PLUGIN_AUTOLOAD`` is
set), then ``*.py`` files of each ``--plugins-dir`` in name order. Built-in plugins register
through the same entry-point group third-party packages use; the core knows none by name.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Generic, TypeVar

import pluggy

from dlbench import hookspecs
from dlbench.errors import PluginError, choices, unknown

ENTRY_POINT_GROUP = "dlbench"
AUTOLOAD_ENV = "DLBENCH_DISABLE_PLUGIN_AUTOLOAD"

T = TypeVar("T")


@dataclass(frozen=True)
class PluginConfig:
    """Which plugins to load; travels to every cell process so it sees the same plugins."""

    plugins_dirs: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()
    autoload: bool = field(default_factory=lambda: not os.environ.get(AUTOLOAD_ENV))

    def to_dict(self) -> dict[str, Any]:
        return {"plugins_dirs": list(self.plugins_dirs), "disabled": list(self.disabled),
                "autoload": self.autoload}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PluginConfig:
        return cls(tuple(d.get("plugins_dirs", ())), tuple(d.get("disabled", ())), bool(d.get("autoload", True)))


@dataclass(frozen=True)
class PluginInfo:
    name: str
    source: str  # "entry point" | "plugins-dir"
    module: str
    version: str | None = None


class Registry(Generic[T]):
    """Named objects of one kind (frameworks, tasks...), filled through a ``register`` callback."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._owner: dict[str, str] = {}

    def register_from(self, plugin: str) -> Callable[[T], None]:
        def register(obj: T) -> None:
            name = getattr(obj, "name", None)
            if not isinstance(name, str) or not name:
                raise PluginError(f"plugin {plugin!r} registered a {self.kind} without a 'name' string")
            if name in self._items:
                raise PluginError(
                    f"duplicate {self.kind} name {name!r}: registered by plugin {self._owner[name]!r} "
                    f"and by plugin {plugin!r} (rename one, or --disable-plugin one of them)")
            self._items[name] = obj
            self._owner[name] = plugin

        return register

    def get(self, name: str, where: str = "") -> T:
        try:
            return self._items[name]
        except KeyError:
            raise PluginError(unknown(self.kind, name, self._items, where)) from None

    def owner(self, name: str) -> str:
        return self._owner[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items[k] for k in sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)


class Plugins:
    """Loaded plugins and what they registered."""

    def __init__(self, config: PluginConfig | None = None) -> None:
        self.config = config or PluginConfig()
        self.pm = pluggy.PluginManager("dlbench")
        self.pm.add_hookspecs(hookspecs)
        self.infos: list[PluginInfo] = []
        self.frameworks: Registry[Any] = Registry("framework")
        self.tasks: Registry[Any] = Registry("task")
        self.scenarios: Registry[Any] = Registry("scenario")
        self.attacks: Registry[Any] = Registry("attack")
        self.reporters: Registry[Any] = Registry("reporter")
        self.datasets: Registry[Any] = Registry("dataset")
        self._load()
        self._collect()

    # -- loading ---------------------------------------------------------------------------------
    def _available_entry_points(self) -> list[importlib.metadata.EntryPoint]:
        eps = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
        seen: dict[str, importlib.metadata.EntryPoint] = {}
        for ep in eps:  # the same distribution may be visible twice (editable installs)
            seen.setdefault(ep.name, ep)
        return [seen[k] for k in sorted(seen)]

    def _local_files(self) -> list[Path]:
        files: list[Path] = []
        for d in self.config.plugins_dirs:
            p = Path(d)
            if not p.is_dir():
                raise PluginError(f"--plugins-dir {d!r} is not a directory (give a folder of *.py plugin files)")
            files.extend(sorted(f for f in p.glob("*.py") if not f.name.startswith("_")))
        return files

    def _load(self) -> None:
        eps = self._available_entry_points() if self.config.autoload else []
        files = self._local_files()
        known = {ep.name for ep in eps} | {f.stem for f in files}
        for name in self.config.disabled:
            if name not in known:
                raise PluginError(unknown("plugin", name, known, "--disable-plugin"))
        for ep in eps:
            if ep.name in self.config.disabled:
                continue
            try:
                module = ep.load()
            except Exception as exc:  # noqa: BLE001 - any import failure becomes one clear line
                raise PluginError(
                    f"plugin {ep.name!r} ({ep.value}) failed to import: {type(exc).__name__}: {exc} "
                    f"(fix or uninstall it, or pass --disable-plugin {ep.name})") from exc
            dist = getattr(ep, "dist", None)
            self._register(module, ep.name, "entry point", ep.value, getattr(dist, "version", None))
        for f in files:
            if f.stem in self.config.disabled:
                continue
            module = _import_file(f)
            self._register(module, f.stem, "plugins-dir", str(f))

    def _register(self, module: ModuleType, name: str, source: str, where: str, version: str | None = None) -> None:
        if self.pm.has_plugin(name):
            raise PluginError(f"duplicate plugin name {name!r} from {where} (rename the file or entry point)")
        try:
            self.pm.register(module, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name!r} ({where}) is invalid: {exc}") from exc
        self.infos.append(PluginInfo(name, source, where, version))

    def _collect(self) -> None:
        for hook_name, registry in (
            ("dlbench_register_frameworks", self.frameworks),
            ("dlbench_register_tasks", self.tasks),
            ("dlbench_register_scenarios", self.scenarios),
            ("dlbench_register_attacks", self.attacks),
            ("dlbench_register_reporters", self.reporters),
            ("dlbench_register_datasets", self.datasets),
        ):
            for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
                try:
                    impl.function(register=registry.register_from(impl.plugin_name))
                except PluginError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    raise PluginError(
                        f"plugin {impl.plugin_name!r} failed in {hook_name}: {type(exc).__name__}: {exc} "
                        f"(fix it, or pass --disable-plugin {impl.plugin_name})") from exc

    # -- queries ---------------------------------------------------------------------------------
    def call(self, hook: str, **kwargs: Any) -> list[Any]:
        return getattr(self.pm.hook, hook)(**kwargs)

    def names(self) -> list[str]:
        return [i.name for i in self.infos]


def _import_file(path: Path) -> ModuleType:
    mod_name = f"dlbench_local_plugins.{path.stem}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"cannot load plugin file {path} (is it a Python file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001
        sys.modules.pop(mod_name, None)
        raise PluginError(
            f"plugin file {path} failed to import: {type(exc).__name__}: {exc} "
            f"(fix the file, or pass --disable-plugin {path.stem})") from exc
    return module


_CACHE: dict[PluginConfig, Plugins] = {}


def get_plugins(config: PluginConfig | None = None) -> Plugins:
    """Load plugins once per configuration (cheap: no framework is imported)."""
    config = config or PluginConfig()
    if config not in _CACHE:
        _CACHE[config] = Plugins(config)
    return _CACHE[config]


def hook_names() -> list[str]:
    """Every hook specification name (the documentation test checks each is documented)."""
    return sorted(n for n in dir(hookspecs) if n.startswith("dlbench_"))


__all__ = ["PluginConfig", "Plugins", "Registry", "get_plugins", "hook_names", "choices"]
