"""The `routesim` command: one module per command group, each declaring its options and calling the library.

- simulator.cli.replay: replay, validate, generate, demo, report
- simulator.cli.bench: bench
- simulator.cli.data: import FORMAT, public-data
- simulator.cli.evals: lanes, gate
- simulator.cli.tuning: sweep, whatif, drift, prices import-litellm
- simulator.cli.served: coverage, estimate (served-only production logs)
- simulator.cli.views: the terminal tables they print

A new command is a function in one of these modules (or a new module with its own `register`), listed in
COMMAND_GROUPS. Command modules import the library only inside the command's body, so that `--help` starts
fast.
"""

from __future__ import annotations

import os
import sys

import typer

from simulator.cli import bench, data, evals, replay, served, tuning
from simulator.cli.console import BAD_INPUT, INTERNAL_ERROR, errors
from simulator.core.errors import RoutesimError

COMMAND_GROUPS = (replay, bench, data, evals, tuning, served)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Replay logged LLM traffic under routing policies: rules, cascades and retries.")
for group in COMMAND_GROUPS:
    group.register(app)


def _print_error(label: str, text: str) -> None:
    from rich.markup import escape

    errors.print(f"[bold red]{label}:[/bold red] {escape(text)}", highlight=False, soft_wrap=True)


def main() -> None:
    """The console script: runs the command, and turns every failure into its exit code without a traceback."""
    try:
        # Without standalone mode click returns the code of a typer.Exit instead of exiting.
        sys.exit(app(standalone_mode=False) or 0)
    except RoutesimError as error:
        _print_error("error", error.render())
        sys.exit(BAD_INPUT)
    except (typer.Abort, KeyboardInterrupt):
        errors.print("aborted")
        sys.exit(130)
    except typer.TyperException as error:  # usage errors, which standalone mode would print itself
        error.show()
        sys.exit(getattr(error, "exit_code", BAD_INPUT))
    except Exception as error:  # anything unforeseen, still without a traceback
        if os.environ.get("ROUTESIM_DEBUG"):
            raise
        _print_error("internal error", f"{type(error).__name__}: {error}\n"
                     "  this is a bug in routesim; rerun with ROUTESIM_DEBUG=1 for the traceback")
        sys.exit(INTERNAL_ERROR)
