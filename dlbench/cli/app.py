"""The typer application every command module adds its commands to, and what they share:
the consoles, the global options (:class:`State`), the ``--store`` option and run-id parsing.

:mod:`dlbench.cli.main` (run, list, data, report, and the entry point) and :mod:`dlbench.cli.ci`
(compare, gate, ab, history, export, import) both import it; ``ci`` does not import ``main``;
``main`` imports ``ci`` once, after its own commands, so that ``ci``'s commands are registered.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from dlbench.errors import DlbenchError

if TYPE_CHECKING:
    from dlbench.plugins import Plugins

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False,
                  help="Benchmark deep-learning frameworks: speed, accuracy, scalability, robustness.")

out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)


class State:
    plugins_dirs: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()
    debug: bool = False

    @classmethod
    def plugins(cls) -> Plugins:
        # the contracts import NumPy: loaded by the commands that need plugins, not by --help
        from dlbench.plugins import PluginConfig, get_plugins

        return get_plugins(PluginConfig(cls.plugins_dirs, cls.disabled))


StoreOpt = Annotated[str, typer.Option("--store", envvar="DLBENCH_STORE",
                                       help="SQLAlchemy URL of the results store.")]


@app.callback()
def _global(
    plugins_dir: Annotated[list[str] | None, typer.Option("--plugins-dir", metavar="DIR", help="Load *.py plugin files from DIR.")] = None,
    disable_plugin: Annotated[list[str] | None, typer.Option("--disable-plugin", metavar="NAME", help="Do not load plugin NAME.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
) -> None:
    State.plugins_dirs = tuple(plugins_dir or ())
    State.disabled = tuple(disable_plugin or ())
    State.debug = debug


def parse_run_id(value: str, what: str) -> int:
    """``value`` as a run id; ``what`` names the argument in the error."""
    try:
        return int(value)
    except ValueError:
        raise DlbenchError(f"{what} must be a run id (an integer) or 'latest', got {value!r}") from None
