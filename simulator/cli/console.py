"""The terminal: the consoles every command prints to, and the exit codes it uses.

Commands import the library they call inside their own body, and rich is imported on the first print,
so that `routesim --help` starts without loading polars, numpy, the engine or rich's console.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

GATE_FAILED = 1  # `routesim gate` only: the candidate failed the regression gate
BAD_INPUT = 2  # the input is wrong; the message says what, where and how to fix it
INTERNAL_ERROR = 3  # a bug in routesim

# Off a terminal (CI logs, pipes) rich would assume 80 columns; a fixed 160 fits the default comparison
# (80 columns), the gate's table (120) and every other table; a wider one (`--wide` on many policies)
# switches to one block per policy.
WIDTH_OFF_TERMINAL = 160


class _LazyConsole:
    """A rich Console made on first use: importing rich's console is a fifth of `routesim --help`'s time,
    and help is printed by typer without it."""

    def __init__(self, stderr: bool):
        self._stderr = stderr
        self._console: Console | None = None

    @property
    def rich(self) -> Console:
        """The Console itself, for rich objects that take one (a progress bar)."""
        if self._console is None:
            from rich.console import Console

            stream = sys.stderr if self._stderr else sys.stdout
            self._console = Console(stderr=self._stderr, width=None if stream.isatty() else WIDTH_OFF_TERMINAL)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.rich, name)


console = _LazyConsole(stderr=False)
errors = _LazyConsole(stderr=True)


@contextmanager
def progress_bar(total: int, enabled: bool) -> Iterator[tuple[Callable[[str], None], Callable[[], None]]]:
    """A bar over `total` steps whose label follows the engine's stages; silent off a terminal.

    Yields (set_label, advance)."""
    if not (enabled and console.is_terminal):
        yield lambda label: None, lambda: None
        return
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=errors.rich, transient=True) as bar:
        task = bar.add_task("replaying", total=total)
        yield (lambda label: bar.update(task, description=label)), (lambda: bar.advance(task))
