"""Files a suite names as parameter values (``model: {onnx: path}``): resolved relative to the
suite file and kept inside what the suite may read (its folder, or the dataset directory)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlbench.data.registry import DATA_DIR_ENV, data_dir
from dlbench.errors import SuiteError


def allowed_roots(suite_path: Path | None) -> list[Path]:
    """The folders a suite may read files from: its own (the working directory for a suite
    given as data) and the dataset directory."""
    base = suite_path.resolve().parent if suite_path is not None else Path.cwd().resolve()
    return [base, data_dir().resolve()]


def resolve(value: dict[str, Any], suite_path: Path | None, where: str, name: str) -> dict[str, str]:
    """``{format: path}`` with the path made absolute (relative paths from the suite's folder),
    or one :class:`SuiteError` line: a file outside the allowed folders, or a missing one."""
    (fmt, raw), = value.items()
    roots = allowed_roots(suite_path)
    path = (roots[0] / Path(str(raw)).expanduser()).resolve()
    if not any(path.is_relative_to(r) for r in roots):
        raise SuiteError(f"{where}: {name}: {fmt} file {raw!r} is outside what the suite may read "
                         f"(its folder {roots[0]} and the data directory {roots[1]}, ${DATA_DIR_ENV}): "
                         "move the file there and give its path relative to the suite")
    if not path.is_file():
        raise SuiteError(f"{where}: {name}: {fmt} file {raw!r} does not exist ({path}): give its path "
                         "relative to the suite file")
    return {fmt: str(path)}
