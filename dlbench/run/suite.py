"""Suites: YAML validated with pydantic, expanded into cells.

A suite is a list of matrix blocks; each block is scenario x tasks x frameworks x devices x
parameters. Every mistake is reported with the file, the field and the valid choices, at load,
before any cell starts: that includes what a framework declares it offers (variants, precisions,
device kinds, its own parameters' choices; class attributes, never an import).

Validated completely: the file is read by :mod:`dlbench.run.yamlfile` (size cap, UTF-8, libyaml,
duplicate keys, nesting and alias expansion bounded); every number is finite and in its range
(the suite's fields here, the budget's in :class:`~dlbench.measure.sampler.Budget`'s annotations,
each parameter's in its :class:`~dlbench.params.Param`); no list may be empty; an unknown key in
any section (top level, matrix block, budget, exclude, gate) is an error with the valid keys and
the closest one; a block expanding to more than :data:`MAX_CELLS` cells is refused before it is
expanded.

```yaml
name: quick
timeout: 300                 # seconds per cell (blocks may override)
matrix:
  - scenario: speed
    tasks: [vision]          # or {vision: {dataset: digits}, nlp: {dataset: spam}}
    frameworks: installed    # installed | all | [torch, jax] | {torch: {}, jax: {variant: compiled}}
    devices: [cpu]
    params: {batch_size: [1, 64], mode: [infer, train], variant: [eager, compiled]}
    budget: {max_time: 3}
    exclude: [{framework: sklearn, mode: train}]
    repeats: 3               # fresh processes per cell, interleaved (blocks override the top level)
```
"""

from __future__ import annotations

import difflib
import importlib.resources
import itertools
import math
import os
import re
import types
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from dlbench.cell import Cell
from dlbench.errors import DlbenchError, SuiteError, choices
from dlbench.framework import Framework
from dlbench.measure.sampler import MAX_SECONDS, Budget
from dlbench.params import COMMON_PARAMS, SEED_MAX, Param
from dlbench.plugins import Plugins
from dlbench.run import model_files, yamlfile
from dlbench.run.gate_schema import GateSchema

SUITES_PACKAGE = "dlbench.suites"
SUITES_PATH_VAR = "DLBENCH_SUITES_PATH"
DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?)$")
MAX_REPEATS = 100
REPEATS_RANGE = f"an integer from 1 to {MAX_REPEATS}"
MAX_CELLS = 10_000
"""Most cells one suite may expand to (the ready suites have at most a few hundred)."""
EXCLUDE_KEYS = ("framework", "task", "device")
"""What an ``exclude`` entry may name besides the cell's parameters."""

Timeout = Annotated[float, Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False)]
"""Seconds a cell may run: positive, finite, at most a week."""
_BUDGET = TypeAdapter(Budget)


def check_repeats(v: Any) -> int:
    """``repeats``: a whole number of fresh processes per cell, 1..MAX_REPEATS."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"repeats must be {REPEATS_RANGE} (got {v!r})")
    if not 1 <= v <= MAX_REPEATS:
        raise ValueError(f"repeats must be {REPEATS_RANGE} (got {v})")
    return v


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest valid name, or nothing."""
    close = difflib.get_close_matches(str(name), list(valid), 1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_key(name: Any, valid: Iterable[str]) -> str:
    valid = list(valid)
    return f"unknown key {name!r}: choose one of {choices(valid)}{did_you_mean(name, valid)}"


def check_budget(budget: dict[str, Any]) -> dict[str, Any]:
    """A block's ``budget``: known keys (the fields of :class:`~dlbench.measure.sampler.Budget`),
    finite values in the ranges its annotations give; returns the values as validated."""
    fields = list(Budget.__dataclass_fields__)
    for k, v in budget.items():
        if k not in fields:
            raise ValueError(unknown_key(k, fields))
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{k}={v!r}: must be a finite number")
    try:
        checked = _BUDGET.validate_python(budget)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ValueError(f"{err['loc'][0]}={err['input']!r}: {err['msg']}") from None
    return {k: getattr(checked, k) for k in budget}


def _names_or_mapping(v: Any, none_ok: bool) -> bool:
    """A list of names, or a mapping of names to parameter mappings (or nothing, if ``none_ok``)."""
    if isinstance(v, list):
        return all(isinstance(x, str) for x in v)
    return isinstance(v, dict) and all(
        isinstance(k, str) and (isinstance(o, dict) or (none_ok and o is None)) for k, o in v.items())


def _nonempty(what: str, v: Any) -> Any:
    if isinstance(v, list | dict) and not v:
        raise ValueError(f"an empty {what} gives no cells: name at least one")
    return v


class Block(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scenario: str
    tasks: list[str] | dict[str, dict[str, Any]]
    frameworks: str | list[str] | dict[str, dict[str, Any] | None] = "installed"
    devices: list[str] = Field(default_factory=lambda: ["cpu"])
    params: dict[str, Any] = Field(default_factory=dict)
    budget: dict[str, Any] = Field(default_factory=dict)
    timeout: Timeout | None = None
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    repeats: int | None = None
    """Fresh processes per cell of this block (overrides the suite's ``repeats``)."""

    @field_validator("tasks", mode="before")
    @classmethod
    def _tasks(cls, v: Any) -> Any:
        if not _names_or_mapping(v, none_ok=False):
            raise ValueError("give a list of task names ([vision, nlp]) or task names with their "
                             "parameters ({vision: {dataset: digits}})")
        return _nonempty("tasks list", v)

    @field_validator("frameworks", mode="before")
    @classmethod
    def _frameworks(cls, v: Any) -> Any:
        if not (isinstance(v, str) or _names_or_mapping(v, none_ok=True)):
            raise ValueError("give installed, all, a framework name, a list of names ([torch, jax]) or "
                             "names with their parameters ({jax: {variant: compiled}})")
        return _nonempty("frameworks list", v)

    @field_validator("budget")
    @classmethod
    def _budget(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_budget(v)

    @field_validator("exclude")
    @classmethod
    def _exclude(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if any(not entry for entry in v):
            raise ValueError("an empty exclude entry would exclude every cell: name what to exclude, "
                             "e.g. {framework: sklearn, mode: train}")
        return v

    @field_validator("repeats", mode="before")
    @classmethod
    def _repeats(cls, v: Any) -> int | None:
        return None if v is None else check_repeats(v)

    @field_validator("devices")
    @classmethod
    def _devices(cls, v: list[str]) -> list[str]:
        _nonempty("devices list", v)
        for d in v:
            if not DEVICE_RE.match(d):
                raise ValueError(f"unknown device {d!r}: choose cpu, cuda or cuda:N")
        return v


class SuiteModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    timeout: Timeout = 600.0
    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    matrix: list[Block] = Field(min_length=1)
    gate: dict[str, Any] = Field(default_factory=dict)
    repeats: int = 1
    """Fresh processes per cell, interleaved with the other cells (round 1 of every cell, then
    round 2 ...); the store merges them (see dlbench.measure.replicates)."""

    @field_validator("repeats", mode="before")
    @classmethod
    def _repeats(cls, v: Any) -> int:
        return check_repeats(v)


class Suite:
    """A validated suite and its source path."""

    def __init__(self, model: SuiteModel, path: Path | None, overrides: tuple[str, ...] = ()) -> None:
        self.model = model
        self.path = path
        self.overrides = overrides
        """The command line's ``-o KEY=VALUE`` overrides applied to the file (stored with the run)."""

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def where(self) -> str:
        where = str(self.path) if self.path else f"suite {self.name!r}"
        return f"{where} with its -o overrides" if self.overrides else where

    def cells(self, plugins: Plugins) -> list[Cell]:
        """Expand every block into cells (duplicates across blocks are dropped, first wins)."""
        return [cell for cell, _ in self.plan(plugins)]

    def plan(self, plugins: Plugins) -> list[tuple[Cell, int]]:
        """Every cell with its number of repeats (the block's ``repeats``, else the suite's)."""
        out: dict[str, tuple[Cell, int]] = {}
        for i, block in enumerate(self.model.matrix):
            k = block.repeats or self.model.repeats
            for cell in _expand(block, i, self, plugins):
                out.setdefault(cell.key, (cell, k))
            if len(out) > MAX_CELLS:
                raise SuiteError(f"{self.where}: more than {MAX_CELLS:,} cells; split the suite")
        return list(out.values())

    def repeats(self, plugins: Plugins) -> dict[str, int]:
        """Cell key -> repeats."""
        return {cell.key: k for cell, k in self.plan(plugins)}


def suite_dirs() -> list[Path]:
    """Where suites are found by name: the folders of ``DLBENCH_SUITES_PATH`` (``os.pathsep``
    separated, searched first), then the ready suites installed with dlbench (package data of
    ``dlbench.suites``, from the ``suites/`` source folder)."""
    extra = [Path(p) for p in os.environ.get(SUITES_PATH_VAR, "").split(os.pathsep) if p]
    return [*extra, Path(str(importlib.resources.files(SUITES_PACKAGE)))]


def resolve(name_or_path: str) -> Path:
    """``quick`` -> the first ``quick.yaml`` of :func:`suite_dirs`; a path is used as it is."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise SuiteError(f"suite file {p} does not exist (give a path to a .yaml file or a suite name: "
                             f"{choices(available())})")
        return p
    for folder in suite_dirs():
        candidate = folder / f"{name_or_path}.yaml"
        if candidate.is_file():
            return candidate
    raise SuiteError(f"unknown suite {name_or_path!r}: choose one of {choices(available())}, "
                     f"give a path to a .yaml file, or add its folder to {SUITES_PATH_VAR}")


def available() -> list[str]:
    """Suite names :func:`resolve` finds."""
    return sorted({p.stem for d in suite_dirs() if d.is_dir() for p in d.glob("*.yaml")})


def load(name_or_path: str, plugins: Plugins, overrides: Sequence[str] = ()) -> Suite:
    """The suite a name or path gives, with the command line's ``-o KEY=VALUE`` ``overrides``
    applied (:func:`apply_overrides`), validated completely, or one :class:`SuiteError` line."""
    path = resolve(name_or_path)
    data = apply_overrides(yamlfile.read(path), overrides, path)
    try:
        return parse(data, plugins, path, overrides)
    except (RecursionError, MemoryError):
        raise SuiteError(f"{path}: too large or too deeply nested to validate; simplify the suite") from None


OVERRIDE_HELP = ("-o KEY=VALUE: KEY is a suite field (timeout, seed, repeats, gate.<field>), a block "
                 "field (params.<name>, budget.<field>, devices, frameworks, tasks, exclude) set in the "
                 "blocks that set it (in every block when none does), or matrix.<i>.<field> for block i; "
                 "VALUE is YAML "
                 "(1, fast, [1, 256], {vision: {dataset: mnist}})")


def apply_overrides(data: Any, overrides: Sequence[str], path: Path | str) -> Any:
    """``data`` (a suite's parsed YAML) with each ``KEY=VALUE`` of ``overrides`` set: a dotted
    KEY names a suite field (``timeout``), a block field (``params.batch_size``,
    ``budget.max_time``: set in the blocks that set it, in every block when none does) or a
    field of one block (``matrix.0.params.epochs``); VALUE is parsed as YAML, with a suite file's
    limits. The result is validated like the file (by the caller)."""
    if not overrides:
        return data
    if not isinstance(data, dict):
        return data  # parse() says what is wrong with the file
    top = set(SuiteModel.model_fields) - {"matrix"}
    block = set(Block.model_fields)
    for item in overrides:
        key, eq, raw = item.partition("=")
        parts = key.strip().split(".")
        if not eq or not all(parts):
            raise SuiteError(f"-o {item!r}: give KEY=VALUE ({OVERRIDE_HELP})")
        value = yamlfile.parse_text(raw, f"-o {key.strip()}")
        matrix = data.get("matrix")
        blocks: list[Any] = matrix if isinstance(matrix, list) else []
        targets: list[Any]
        if parts[0] in top:
            targets, rest = [data], parts
        elif parts[0] == "matrix" and len(parts) >= 3 and parts[1].isdigit():
            i = int(parts[1])
            if i >= len(blocks):
                raise SuiteError(f"-o {key}: {path} has {len(blocks)} matrix blocks (0..{len(blocks) - 1})")
            targets, rest = [blocks[i]], parts[2:]
        elif parts[0] in block:  # the blocks that set it (an override), else every block
            rest = parts
            targets = [b for b in blocks if _has_path(b, parts)] or blocks
        else:
            valid = sorted(top | block | {"matrix"})
            raise SuiteError(f"-o {key}: unknown field {parts[0]!r}; choose one of {choices(valid)}"
                             f"{did_you_mean(parts[0], valid)}")
        for target in targets:
            _set_path(target, rest, value, key)
    return data


def _has_path(target: Any, parts: list[str]) -> bool:
    for part in parts:
        if not isinstance(target, dict) or part not in target:
            return False
        target = target[part]
    return True


def _set_path(target: Any, parts: list[str], value: Any, key: str) -> None:
    i = 0
    for i, part in enumerate(parts[:-1]):  # noqa: B007 - i names the part that is no mapping
        if not isinstance(target, dict):
            break
        nxt = target.get(part)
        if nxt is None:
            nxt = target[part] = {}
        target = nxt
    else:
        if isinstance(target, dict):
            target[parts[-1]] = value
            return
    raise SuiteError(f"-o {key}: {'.'.join(parts[:i + 1])} is not a mapping in the suite; set the whole "
                     f"field instead (-o {'.'.join(parts[:i + 1])}=...)")


def parse(data: Any, plugins: Plugins, path: Path | None = None, overrides: Sequence[str] = ()) -> Suite:
    where = (str(path) if path else "suite") + (" with its -o overrides" if overrides else "")
    if not isinstance(data, dict):
        raise SuiteError(f"{where}: a suite is a mapping with 'name' and 'matrix' (got {type(data).__name__})")
    try:
        model = SuiteModel.model_validate(data)
    except ValidationError as exc:
        raise SuiteError(f"{where}: {_first_error(exc, SuiteModel)}") from None
    try:
        GateSchema.model_validate(model.gate)
    except ValidationError as exc:
        raise SuiteError(f"{where}: {_first_error(exc, GateSchema, ('gate',))}") from None
    suite = Suite(model, path, tuple(overrides))
    suite.cells(plugins)  # validates names and parameters
    return suite


def _first_error(exc: ValidationError, schema: type[BaseModel], prefix: tuple[Any, ...] = ()) -> str:
    """``field a.b: problem`` for the first error (a misspelled key first: it also shows up as a
    missing one), unknown keys with the valid ones and the closest."""
    err = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
    loc = tuple(err["loc"])
    field = ".".join(_shown(x) for x in (*prefix, *loc))
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        owner = _model_at(schema, loc[:-1])
        valid = list(owner.model_fields) if owner else []
        msg = f"unknown field; choose one of {choices(valid)}{did_you_mean(str(loc[-1]), valid)}"
    elif err["type"] == "missing":
        msg = "required field is missing"
    else:
        msg = msg.removeprefix("Value error, ")
    return f"field {field}: {msg}"


def _shown(part: Any) -> str:
    """A part of a field's location as text: a plain key as it is, anything else quoted (so a key
    holding a newline or an escape sequence stays on the one line, inert)."""
    text = str(part)
    return text if re.fullmatch(r"[\w*?/\[\]-]+", text, re.ASCII) else repr(text)


def _model_at(schema: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class found at ``loc`` inside ``schema`` (through lists, dicts and optionals)."""
    t: Any = schema
    for part in loc:
        t = _unoptional(t)
        if isinstance(t, type) and issubclass(t, BaseModel):
            info = t.model_fields.get(str(part))
            if info is None:
                return None
            t = info.annotation
        elif typing.get_origin(t) in (list, dict):
            t = typing.get_args(t)[-1]  # list[X] by index, dict[str, X] by key
        else:
            return None
    t = _unoptional(t)
    return t if isinstance(t, type) and issubclass(t, BaseModel) else None


def _unoptional(t: Any) -> Any:
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return t


# ------------------------------------------------------------------------------------------------


def _listify(v: Any) -> list[Any]:
    return list(v) if isinstance(v, list) else [v]


WILDCARDS = ("all", "installed")


def _frameworks(block: Block, where: str, plugins: Plugins) -> dict[str, dict[str, Any]]:
    """Framework names with their parameter overrides (``{jax: {variant: compiled}}``)."""
    fws = block.frameworks
    if fws == "all":
        return {n: {} for n in plugins.frameworks.names()}
    if fws == "installed":
        return {f.name: {} for f in plugins.frameworks if f.availability().installed}
    if isinstance(fws, str):
        fws = [fws]
    items = fws.items() if isinstance(fws, dict) else ((n, {}) for n in fws)
    out = {}
    for name, overrides in items:
        plugins.frameworks.get(name, where)
        out[name] = dict(overrides or {})
    return out


def _offered(fw: Framework, device: str, params: dict[str, Any], sources: dict[str, str],
             where: str) -> str | None:
    """What the framework declares it cannot do for this cell (device kind, variant, precision,
    a limit of its own), as one line naming the field that asks for it and the fix; None if it may."""
    reason = fw.unsupported(device, params)
    if reason is None:
        return None
    if device.split(":", 1)[0] not in fw.device_kinds:
        field, key, value = f"{where}.devices", "device", device
    else:
        bad = [k for k, offered in (("variant", fw.variants), ("precision", fw.precisions))
               if params.get(k) not in offered]
        key = bad[0] if bad else next((k for k in ("variant", "precision") if k in sources), "")
        field, value = sources.get(key, where), str(params.get(key))
    fix = f" (or exclude: [{{framework: {fw.name}, {key}: {value}}}])" if key else ""
    return f"{field}: {reason}{fix}"


def _expand(block: Block, index: int, suite: Suite, plugins: Plugins) -> list[Cell]:
    where = f"{suite.where} matrix[{index}]"
    scenario = plugins.scenarios.get(block.scenario, f"{where}.scenario")
    task_items = list(block.tasks.items() if isinstance(block.tasks, dict) else ((t, {}) for t in block.tasks))
    frameworks = _frameworks(block, f"{where}.frameworks", plugins)
    tasks = {name: plugins.tasks.get(name, f"{where}.tasks") for name, _ in task_items}
    all_fw_params = {k for f in plugins.frameworks for k in f.params}
    _check_exclude(block, where, {*COMMON_PARAMS, *scenario.params, *all_fw_params,
                                  *(k for t in tasks.values() for k in t.params)})
    # frameworks named in the block must offer what it asks for (an error at load); a wildcard's
    # (installed, all) cells that ask for more than their framework offers are skipped in the
    # parent with the reason (dlbench.run.session), never started
    named = not (isinstance(block.frameworks, str) and block.frameworks in WILDCARDS)
    cells: list[Cell] = []
    excluded = 0
    for task_name, task_overrides in task_items:
        task = tasks[task_name]
        for fw_name, fw_overrides in frameworks.items():
            fw = plugins.frameworks.get(fw_name)
            declared: dict[str, Param] = {**COMMON_PARAMS, **scenario.params, **task.params}
            fw_params = {k: p for k, p in fw.params.items() if not p.applies_to or fw_name in p.applies_to}
            declared.update(fw_params)
            given = {**block.params, **(task_overrides or {}), **fw_overrides}
            sources = {**{k: f"{where}.params" for k in block.params},
                       **{k: f"{where}.tasks.{task_name}" for k in task_overrides or {}},
                       **{k: f"{where}.frameworks.{fw_name}" for k in fw_overrides}}
            for k in given:
                if k not in declared and k not in all_fw_params:
                    raise SuiteError(f"{sources[k]}: unknown parameter {k!r} for scenario {scenario.name!r}, "
                                     f"task {task_name!r}: choose one of {choices(declared)}"
                                     f"{did_you_mean(k, declared)}")
            # parameters of other frameworks (e.g. keras 'backend') do not expand this framework
            given = {k: v for k, v in given.items() if k in declared}
            for k, v in given.items():
                if isinstance(v, list) and not v:
                    raise SuiteError(f"{sources[k]}: {k}=[]: an empty list gives no cells; give at least "
                                     "one value")
                for value in _listify(v):
                    err = declared[k].validate(k, value)
                    if err:
                        owner = f"{fw_name} " if k in fw_params else ""
                        raise SuiteError(f"{sources[k]}: {owner}{err}")
            given = {k: _with_files(declared[k], v, suite.path, sources[k], k) for k, v in given.items()}
            keys = list(given)
            n = math.prod(len(_listify(given[k])) for k in keys) * len(block.devices)
            if len(cells) + n > MAX_CELLS:
                raise SuiteError(f"{where}: expands to more than {MAX_CELLS:,} cells; give fewer values "
                                 "or split the suite")
            for combo in itertools.product(*(_listify(given[k]) for k in keys)):
                params = {k: p.default for k, p in declared.items()}
                params["seed"] = suite.model.seed if "seed" not in given else params["seed"]
                params.update(dict(zip(keys, combo, strict=True)))
                problem = scenario.check(params)
                if problem:
                    raise SuiteError(f"{where}.params: {problem}")
                files = [k for k in keys if declared[k].files and isinstance(params[k], dict)]
                if files:  # a file the suite names as a model is read and checked at load
                    _check_model_file(task, params, sources[files[0]])
                for device in block.devices:
                    row = {"framework": fw_name, "task": task_name, "device": device, **params}
                    if any(all(row.get(k) == v for k, v in ex.items()) for ex in block.exclude):
                        excluded += 1
                        continue
                    problem = _offered(fw, device, params, sources, where) if named else None
                    if problem:
                        raise SuiteError(problem)
                    cells.append(Cell(block.scenario, task_name, fw_name, device, params,
                                      float(block.timeout or suite.model.timeout), dict(block.budget),
                                      tuple(keys)))
    if excluded and not cells:
        raise SuiteError(f"{where}.exclude: excludes every cell of the block; narrow it or remove the block")
    return cells


def _with_files(param: Param, value: Any, suite_path: Path | None, where: str, name: str) -> Any:
    """``value`` with every ``{format: path}`` of a file parameter resolved (model_files)."""
    if not param.files:
        return value
    resolved = [model_files.resolve(v, suite_path, where, name) if isinstance(v, dict) else v
                for v in _listify(value)]
    return resolved if isinstance(value, list) else resolved[0]


def _check_model_file(task: Any, params: dict[str, Any], where: str) -> None:
    """Read the model file a cell names now (at load), so a bad one is one line before any cell runs."""
    try:
        task.model_spec(params)
    except DlbenchError as exc:
        raise SuiteError(f"{where}: {exc}") from None


def _check_exclude(block: Block, where: str, params: set[str]) -> None:
    """Every key of an ``exclude`` entry is ``framework``, ``task``, ``device`` or a parameter
    some cell of the block has."""
    valid = {*EXCLUDE_KEYS, *params}
    for i, entry in enumerate(block.exclude):
        for k in entry:
            if k not in valid:
                raise SuiteError(f"{where}.exclude[{i}]: {unknown_key(k, valid)}")
