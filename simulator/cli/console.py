"""The terminal: the consoles every command prints to, and the exit codes it uses.

Commands import the library they call inside their own body, and rich is imported on the first print,
so that `routesim --help` starts without loading polars, numpy, the engine or rich's console.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

GATE_FAILED = 1  # `routesim gate` only: the candidate failed the regression gate
BAD_INPUT = 2  # the input is wrong; the message says what, where and how to fix it
INTERNAL_ERROR = 3  # a bug in routesim
STDOUT_CLOSED = 141  # stdout's reader closed it (`| head`): 128 + SIGPIPE, as a shell reports a program it stopped


class StdoutClosed(BaseException):
    """The reader of stdout closed it (`routesim ... | head -3`): the command ends quietly with exit
    STDOUT_CLOSED (`simulator.cli.main`). A BaseException, as KeyboardInterrupt is, so that neither typer's
    handler of OSError (which turns a broken pipe into a silent exit 1, the gate's code) nor a command's own
    `except Exception` stops it."""

# Off a terminal (CI logs, pipes) with no COLUMNS, rich would assume 80 columns; a fixed 160 fits the
# default comparison, the gate's table (120) and most others; a wider one (`--wide` on many policies)
# prints as one block per row (print_table).
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
            # COLUMNS, when set, is the width asked for (rich reads it when width is None); the fixed
            # width off a terminal is only the default, else `COLUMNS=80 routesim replay | less` got 160.
            self._console = _console_class()(stderr=self._stderr, width=None if self.sized else WIDTH_OFF_TERMINAL)
        return self._console

    @property
    def sized(self) -> bool:
        """Whether the width is one asked for: a terminal's, or COLUMNS. Off a terminal without COLUMNS it is
        only WIDTH_OFF_TERMINAL, and a line of words stays one line there (logs are read with grep)."""
        stream = sys.stderr if self._stderr else sys.stdout
        return stream.isatty() or os.environ.get("COLUMNS", "").strip().isdigit()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.rich, name)


def _console_class() -> type:
    """rich's Console, but a closed stdout raises StdoutClosed: rich's own answer (`on_broken_pipe`) is
    SystemExit(1), which is the failed gate's exit code."""
    from rich.console import Console

    class ClosedAware(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True  # nothing more is written to a closed stream
            if not self.stderr:
                raise StdoutClosed
            # stderr closed: a message nobody can read is dropped; the exit code still tells what happened.

    return ClosedAware


console = _LazyConsole(stderr=False)
errors = _LazyConsole(stderr=True)


def inert(text: object) -> str:
    """A string from the data (or a message holding one) as rich markup that prints it as it is: markup escaped,
    and control or invisible characters (a newline in a slice name) written as escapes such as \\u000a.

    rich's escape doubles a trailing backslash, so that a tag written right after the string stays a tag;
    routesim never writes a tag right after one, and the doubled backslash would print as two (a slice 'a\\'
    shown as 'a\\\\')."""
    from rich.markup import escape

    from simulator.core.errors import visible

    shown = visible(str(text))
    escaped = escape(shown)
    if escaped.endswith("\\\\") and not shown.endswith("\\\\"):
        escaped = escaped[:-1]
    return escaped


def beside(as_json: bool = False, **outputs: Any) -> _LazyConsole:
    """The console for what a command prints beside its outputs (`outputs`: option name -> path or None): stderr
    when one of them is stdout (`-`), so that stdout holds that output alone (`gate --markdown - > comment.md`),
    else stdout. RoutesimError when two things would write to stdout: two outputs given as `-`, or one and
    `--json` (`as_json`)."""
    from simulator.core.errors import RoutesimError
    from simulator.core.outputs import STDOUT

    streamed = [f"--{name.replace('_', '-')}" for name, path in outputs.items()
                if path is not None and str(path) == STDOUT]
    if as_json and streamed:
        streamed.append("--json")
    if len(streamed) > 1:
        raise RoutesimError(f"{' and '.join(streamed)} would {'both' if len(streamed) == 2 else 'all'} write to "
                            "stdout", where=", ".join(streamed),
                            fix="give all but one of them a file")
    return errors if streamed else console


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


def natural_width(target: Any, table: Any) -> int:
    """The width a rich table needs for every cell whole. Measured against an unbounded width: measured
    against the console's own width, rich clamps the measure to it, so a table that will be squeezed
    with ellipses still appears to fit."""
    from rich.measure import Measurement

    target = getattr(target, "rich", target)
    return Measurement.get(target, target.options.update_width(10**6), table).maximum


def fits(target: Any, table: Any) -> bool:
    """Whether the table prints on this console with no cell cut ("89…") or folded."""
    target = getattr(target, "rich", target)
    return natural_width(target, table) <= target.width


def table_blocks(table: Any) -> list[str]:
    """The table as one block per row, `column: value` lines (rich markup, as the cells hold it): the
    first cell heads its block, so a name of any length and every number stay whole on a narrow console."""
    from rich.text import Text

    def plain(cell: Any) -> str:
        # Cells built as Text (styled) become markup again; strings are already escaped markup.
        # A cell of several lines (a gate's "overall" over "bar 90.0%") is one line of the block.
        text = cell.markup if isinstance(cell, Text) else str(cell)
        return " · ".join(part.strip() for part in text.splitlines() if part.strip())

    columns = table.columns
    headers = [plain(column.header) for column in columns]
    lines = []
    for row in range(table.row_count):
        cells = [plain(column._cells[row]) if row < len(column._cells) else "" for column in columns]
        # The row's style (the gate's failing scopes in bold red) marks its block's heading.
        style = table.rows[row].style if row < len(table.rows) else None
        heading = cells[0] if cells else ""
        lines.append(f"[{style}]{heading}[/]" if isinstance(style, str) and style and heading else heading)
        lines.extend(f"  {header}: {cell}" if header else f"  {cell}"
                     for header, cell in zip(headers[1:], cells[1:]) if cell.strip())
    return lines


def print_words(target: Any, line: str) -> None:
    """A line of plain words (a verdict, a warning): wrapped at spaces to the console's width, continued
    two columns further in than the line's own indent, when that width was asked for (`sized`: a terminal
    or COLUMNS; a plain rich Console's own width); else printed as one line. No markup is read from it."""
    import textwrap

    # A Console made with its own width (a report's, a test's) is sized as asked.
    width = getattr(target, "rich", target).width if getattr(target, "sized", True) else None
    if width is None or len(line) <= width:
        target.print(line, highlight=False, markup=False, soft_wrap=True)
        return
    indent = " " * (len(line) - len(line.lstrip(" ")) + 2)
    for part in textwrap.wrap(line, width=width, subsequent_indent=indent, break_long_words=False,
                              break_on_hyphens=False):
        target.print(part, highlight=False, markup=False, soft_wrap=True)


def print_table(target: Any, table: Any) -> None:
    """Print a rich table whole: as a table when its natural width fits the console, else one block per row
    (`column: value` lines) under its title, then its caption. Every table the CLI prints goes through
    here, so no number or name is ever cut with an ellipsis however narrow the terminal."""
    target = getattr(target, "rich", target)
    if fits(target, table):
        target.print(table)
        return
    for part in (table.title, *table_blocks(table), table.caption):
        if part:
            # Wrapped at spaces like any text; a word longer than the console folds rather than being cut.
            target.print(part.markup if hasattr(part, "markup") else part, highlight=False, overflow="fold")
