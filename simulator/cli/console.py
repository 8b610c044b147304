"""The terminal: the consoles every command prints to, and the exit codes it uses.

Only rich's console is imported here; commands import the library they call inside their own body, so
that `routesim --help` starts without loading polars, numpy or the engine.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console

GATE_FAILED = 1  # `routesim gate` only: the candidate failed the regression gate
BAD_INPUT = 2  # the input is wrong; the message says what, where and how to fix it
INTERNAL_ERROR = 3  # a bug in routesim

# Off a terminal (CI logs, pipes) rich would assume 80 columns; a fixed 160 fits the default comparison
# (80 columns), the gate's table (120) and every other table; a wider one (`--wide` on many policies)
# switches to one block per policy.
WIDTH_OFF_TERMINAL = 160
console = Console(width=None if sys.stdout.isatty() else WIDTH_OFF_TERMINAL)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else WIDTH_OFF_TERMINAL)


@contextmanager
def progress_bar(total: int, enabled: bool) -> Iterator[tuple[Callable[[str], None], Callable[[], None]]]:
    """A bar over `total` steps whose label follows the engine's stages; silent off a terminal.

    Yields (set_label, advance)."""
    if not (enabled and console.is_terminal):
        yield lambda label: None, lambda: None
        return
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=errors, transient=True) as bar:
        task = bar.add_task("replaying", total=total)
        yield (lambda label: bar.update(task, description=label)), (lambda: bar.advance(task))
