"""Plugin manager: entry points, ``--plugins-dir`` files, the disable list and the registries.

Discovery order: entry points of group ``dlbench`` (unless ``DLBENCH_DISABLE_PLUGIN_AUTOLOAD`` is
set), then ``*.py`` files of each ``--plugins-dir`` in name order. Built-in plugins register
through the same entry-point group third-party packages use; the core knows none by name.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pluggy

from dlbench import hookspecs
from dlbench.errors import PluginError, choices, unknown
from dlbench.framework import Framework
from dlbench.task import Task

if TYPE_CHECKING:
    from dlbench.data.registry import DatasetInfo
    from dlbench.report.base import Reporter
    from dlbench.robustness.attacks import Attack
    from dlbench.scenarios.base import Scenario

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


KINDS: tuple[tuple[str, str, type | str, str], ...] = (
    ("frameworks", "framework", Framework, "dlbench_register_frameworks"),
    ("tasks", "task", Task, "dlbench_register_tasks"),
    ("scenarios", "scenario", "dlbench.scenarios.base:Scenario", "dlbench_register_scenarios"),
    ("attacks", "attack", "dlbench.robustness.attacks:Attack", "dlbench_register_attacks"),
    ("reporters", "reporter", "dlbench.report.base:Reporter", "dlbench_register_reporters"),
    ("datasets", "dataset", "dlbench.data.registry:DatasetInfo", "dlbench_register_datasets"),
)
"""Every registry: attribute of :class:`Plugins`, kind, the class its objects are instances of, hook."""


def _resolve(expected: type | str) -> type:
    if isinstance(expected, str):
        module, _, attr = expected.partition(":")
        resolved: type = getattr(importlib.import_module(module), attr)
        return resolved
    return expected


def _describe(obj: Any) -> str:
    name = getattr(obj, "name", None)
    named = f" named {name!r}" if isinstance(name, str) and name else ""
    cls = type(obj).__qualname__
    return f"{'an' if cls[:1].lower() in 'aeiou' else 'a'} {cls}{named}"


def _elsewhere(obj: Any, kind: str) -> str:
    """`` (it is a task: register it in dlbench_register_tasks)`` when ``obj`` is another kind."""
    for _, other, expected, hook in KINDS:
        if other != kind and isinstance(obj, _resolve(expected)):
            return f" (it is a {other}: register it in {hook})"
    return ""


NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
NAME_RULE = ("a letter, then up to 63 letters, digits, '_', '-' or '.' (suites and cell keys use it: "
             "no spaces, commas, brackets, '/' or '=')")


class Registry(Generic[T]):
    """Named objects of one kind (frameworks, tasks...), filled through a ``register`` callback.

    ``expected`` is the class every registered object must be an instance of: a class, or
    ``"module:Class"`` for contracts that live above this module's layer (scenarios, reporters,
    attacks, datasets), imported when the first object is registered. Registering the wrong kind of object (a class instead of
    an instance, a task into frameworks, no ``name``, a name suites cannot spell) is one line
    naming the plugin, what it registered and what is expected.
    """

    def __init__(self, kind: str, expected: type[T] | str | None = None) -> None:
        self.kind = kind
        self._expected = expected
        self._items: dict[str, T] = {}
        self._owner: dict[str, str] = {}

    @property
    def expected(self) -> type | None:
        """The class registered objects must be instances of (None: any object with a name)."""
        if self._expected is not None:
            self._expected = _resolve(self._expected)
        return self._expected

    def _problem(self, obj: Any) -> str | None:
        """What is wrong with registering ``obj`` here, or None."""
        want = self.expected
        what = f"{want.__module__}.{want.__qualname__}" if want is not None else f"{self.kind} object"
        if isinstance(obj, type):
            if want is not None and issubclass(obj, want):
                return (f"registered the class {obj.__qualname__} as a {self.kind}: register an instance, "
                        f"register({obj.__qualname__}())")
            return f"registered the class {obj.__qualname__} as a {self.kind}: expected an instance of {what}"
        if want is not None and not isinstance(obj, want):
            return (f"registered {_describe(obj)} as a {self.kind}: expected an instance of {what}"
                    f"{_elsewhere(obj, self.kind)}")
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            return (f"registered {_describe(obj)} as a {self.kind} without a 'name' string "
                    f"(got {name!r}): give its class a name, e.g. name = \"my{self.kind}\"")
        if not NAME_RE.match(name):
            return f"registered a {self.kind} named {name!r}: a name is {NAME_RULE}"
        return None

    def register_from(self, plugin: str, where: str = "") -> Callable[[T], None]:
        """The ``register`` callback handed to ``plugin``'s registration hook."""
        label = f"plugin {plugin!r} ({where})" if where else f"plugin {plugin!r}"

        def register(obj: T) -> None:
            problem = self._problem(obj)
            if problem:
                raise PluginError(f"{label} {problem}")
            name: str = obj.name  # type: ignore[attr-defined]
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
        self.frameworks: Registry[Framework] = _registry("frameworks")
        self.tasks: Registry[Task] = _registry("tasks")
        self.scenarios: Registry[Scenario] = _registry("scenarios")
        self.attacks: Registry[Attack] = _registry("attacks")
        self.reporters: Registry[Reporter] = _registry("reporters")
        self.datasets: Registry[DatasetInfo] = _registry("datasets")
        self._load()
        self._check_pending()
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
        label = f"plugin {name!r} ({where})"
        for attr in hook_names():  # a hook's name without @dlbench.hookimpl is silently not a hook
            if callable(getattr(module, attr, None)) and self.pm.parse_hookimpl_opts(module, attr) is None:
                raise PluginError(f"{label} defines {attr} without @dlbench.hookimpl: decorate it, "
                                  "or pluggy never calls it")
        try:
            self.pm.register(module, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"{label} is invalid: {_one_line(exc)}") from exc
        self.infos.append(PluginInfo(name, source, where, version))
        for hook in self.pm.get_hookcallers(module) or []:
            if not hook.has_spec() and any(not i.optionalhook for i in hook.get_hookimpls() if i.plugin is module):
                raise PluginError(f"{label} implements unknown hook {hook.name!r}: {_closest_hook(hook.name)}")

    def _check_pending(self) -> None:
        """pluggy's own check that every hook implementation has a specification (each plugin was
        checked as it registered, with its name and file; this guards anything registered later)."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {self.pm.get_name(exc.plugin)!r} is invalid: {_one_line(exc)}") from exc

    def _collect(self) -> None:
        where = {i.name: i.module for i in self.infos}
        for attr, _, _, hook_name in KINDS:
            registry: Registry[Any] = getattr(self, attr)
            for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
                try:
                    impl.function(register=registry.register_from(impl.plugin_name, where.get(impl.plugin_name, "")))
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


def _registry(attr: str) -> Registry[Any]:
    _, kind, expected, _ = next(k for k in KINDS if k[0] == attr)
    return Registry(kind, expected)


def _closest_hook(name: str) -> str:
    """``did you mean 'dlbench_register_tasks'?`` (or every hook, when none is close)."""
    close = difflib.get_close_matches(name, hook_names(), 1, 0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"choose one of {choices(hook_names())} (or mark it @dlbench.hookimpl(optionalhook=True))"


def _one_line(exc: pluggy.PluginValidationError) -> str:
    """pluggy's multi-line message on one line, with the specification's signature when it names one."""
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    spec = next((getattr(hookspecs, n) for n in hook_names() if f"'{n}'" in text), None)
    if spec is not None:
        text += f" (the specification is {spec.__name__}({', '.join(inspect.signature(spec).parameters)}))"
    return text


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
