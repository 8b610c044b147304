"""Writing outputs so that a failed run never leaves a half-written file, and never touches an input.

Everything routesim writes goes through here: a temporary file or folder beside the target, renamed onto
it only once complete. Before anything is written the destination is checked (`check_destination`):

- it may not be, lie inside, or contain any input the run has read (`note_input`): data folders and their
  files, scenarios, price sheets, saved results being re-rendered, imported exports;
- a symlink or a special file (device, FIFO, socket) is never replaced; `-` writes a text output to stdout;
- a CSV's text cells that a spreadsheet would run as a formula are written as text (`csv_safe`);
- an existing folder is replaced only when routesim wrote it (it holds the MARKER file), or with `--force`
  (`allow_replacing_folders`); an existing regular file is replaced. A folder routesim writes into piece by
  piece (saved results) is held to the same rule (`claim_folder`).

The inputs and the `--force` setting belong to the command being run: `begin_run` clears them when the
CLI starts a command.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from simulator.core.errors import RoutesimError

if TYPE_CHECKING:  # the CLI imports this module before any command runs; polars loads only to write Parquet
    import polars as pl

# Every folder routesim writes holds this file, so a later run knows it may replace the folder.
MARKER = ".routesim-output"
MARKER_TEXT = "This folder was written by routesim; a later routesim run may replace it.\n"
STDOUT = "-"


@dataclass
class _Run:
    inputs: set[Path] = field(default_factory=set)
    force: bool = False


_run = _Run()


def begin_run() -> None:
    """Forget the inputs and the --force of an earlier command (the CLI calls this before each command)."""
    _run.inputs.clear()
    _run.force = False


def note_input(path: Path) -> None:
    """Records a file or folder the run reads, so that no output of the run may replace it."""
    _run.inputs.add(_resolved(path))


def allow_replacing_folders(force: bool) -> None:
    """`--force`: an existing folder routesim did not write may be replaced (inputs and links never are)."""
    _run.force = _run.force or bool(force)


def _resolved(path: Path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def file_kind(mode: int) -> str:
    """What a file that is neither regular nor a folder is, from its `st_mode`: 'a FIFO (named pipe)', ..."""
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def check_destination(path: Path, *, folder: bool = False, updating: bool = False) -> Path:
    """Refuses (RoutesimError) a destination that would destroy something; returns it unchanged.

    `folder` says whether a folder (else a file) is written there; `updating` that the destination is an
    input the command updates on purpose (`import --merge` onto its own data folder).
    """
    if str(path) == STDOUT:
        raise RoutesimError("'-' (stdout) is taken only by text outputs", where=str(path),
                            fix="give a file name; '-' works for gate --markdown, lanes --emit and "
                                "prices import-litellm -o")
    path = Path(path)
    target = _resolved(path)
    for source in sorted(_run.inputs):
        if updating and source == target:
            continue
        if target == source:
            relation = "is"
        elif source in target.parents:
            relation = "lies inside"
        elif target in source.parents:
            relation = "contains"
        else:
            continue
        raise RoutesimError(f"the output {path} {relation} an input of this run: {source}", where=str(path),
                            fix="write the output somewhere else; routesim never writes over its inputs")
    try:
        status = path.lstat()
    except FileNotFoundError:
        status = None
    except OSError as error:
        raise RoutesimError(f"cannot write to {path}: {error.strerror}", where=str(path),
                            fix="choose a destination in a folder you can write to") from None
    if status is not None:
        if not (stat.S_ISREG(status.st_mode) or stat.S_ISDIR(status.st_mode)):
            raise RoutesimError(f"{path} is {file_kind(status.st_mode)}; routesim never replaces one",
                                where=str(path), fix="give the path of a regular file"
                                + (" (or '-' for stdout, where the option allows it)" if not folder else ""))
        if stat.S_ISDIR(status.st_mode) and not folder:
            raise RoutesimError(f"{path} is a folder, not a file", where=str(path), fix="give a file name to write")
        if stat.S_ISREG(status.st_mode) and folder:
            raise RoutesimError(f"{path} is a file, but a folder is written here", where=str(path),
                                fix="give the name of a new folder")
        if (stat.S_ISDIR(status.st_mode) and not updating and not _run.force and any(path.iterdir())
                and not (path / MARKER).is_file() and not earlier_results_folder(path)):
            raise RoutesimError(f"{path} is a folder routesim did not write (it has no {MARKER} file); "
                                "it is not replaced", where=str(path),
                                fix="choose a new destination, or add --force to replace the folder")
    return path


def _prepare_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _os_error(path, error) from None


def _os_error(path: Path, error: OSError) -> RoutesimError:
    reason = error.strerror or str(error)
    if isinstance(error, (FileExistsError, NotADirectoryError)):
        reason = "a file is in the way of a folder on its path"
    shown = error.filename
    if shown is not None and Path(str(shown)).name.startswith(f".{Path(path).name}."):
        shown = None  # the temporary file beside the destination: the user knows only the destination
    return RoutesimError(f"cannot write {path}: {reason}", where=str(shown or path),
                         fix="choose a destination in a folder you can write to, with space left")


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; it replaces `path` when the block completes."""
    path = check_destination(Path(path))
    _prepare_parent(path)
    try:
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise _os_error(path, error) from None
    os.close(handle)
    temporary = Path(name)
    try:
        try:
            yield temporary
        except OSError as error:  # the writer's failure names the destination, never the temporary file
            raise _os_error(path, error) from None
        try:
            os.chmod(temporary, 0o644)  # mkstemp makes the file private; outputs are meant to be shared
            check_destination(path)  # again: the destination may have changed while the output was made
            os.replace(temporary, path)
        except OSError as error:
            raise _os_error(path, error) from None
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def atomic_folder(target: Path, *, updating: bool = False) -> Iterator[Path]:
    """A temporary folder beside `target` to fill; it replaces `target` (and whatever it held) when the block
    completes, and a failure leaves `target` as it was. The folder gets the MARKER file.

    `updating`: `target` is an input the command rewrites on purpose (merging grades onto a data folder).
    """
    target = check_destination(Path(target), folder=True, updating=updating)
    _prepare_parent(target)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.writing-", dir=target.parent))
    except OSError as error:
        raise _os_error(target, error) from None
    staging.chmod(0o755)  # mkdtemp makes it private; the folder it becomes is an ordinary one
    retired = target.with_name(f".{target.name}.replaced-{os.getpid()}")
    try:
        yield staging
        (staging / MARKER).write_text(MARKER_TEXT, encoding="utf-8")
        check_destination(target, folder=True, updating=updating)
        if target.exists():
            os.replace(target, retired)
        os.replace(staging, target)
    except OSError as error:
        if retired.exists() and not target.exists():
            os.replace(retired, target)
        raise _os_error(target, error) from None
    except BaseException:
        if retired.exists() and not target.exists():
            os.replace(retired, target)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)


# What a report writes beside its scenarios' folders (simulator.report.build names them); with those folders,
# each marked, the whole of a results folder routesim wrote before results folders carried MARKER themselves.
EARLIER_RESULT_FILES = frozenset({"report.json", "coverage.json", "baselines.json", "gates.json", "price-checks.json"})


def earlier_results_folder(path: Path) -> bool:
    """Whether `path` is a results folder an earlier routesim wrote, before it marked results folders (not
    their scenario folders) with MARKER: at least one folder, each holding MARKER, and no file but those a
    report writes beside them (EARLIER_RESULT_FILES). It counts as routesim's, and is marked when next written
    (`claim_folder`); a folder of anyone else's files is not one."""
    try:
        entries = list(path.iterdir())
        folders = [entry for entry in entries if entry.is_dir() and not entry.is_symlink()]
        return bool(folders) and all((folder / MARKER).is_file() for folder in folders) and all(
            entry.name in EARLIER_RESULT_FILES for entry in entries if entry not in folders)
    except OSError:
        return False


def claim_folder(target: Path) -> Path:
    """Makes `target` a folder routesim writes into piece by piece rather than whole, as saved results are (one
    folder per scenario, a report's files beside them): refused as any output folder is (`check_destination`:
    one routesim did not write only with `--force`), created when missing, and given the MARKER file when new
    or empty, so that a later run may write into it again. A folder of someone else's files that `--force`
    let through is written into but not marked: it stays theirs, and no later run replaces it without
    `--force`. Callers check the folder before any work too, so that a refusal comes first."""
    target = check_destination(Path(target), folder=True)
    try:
        marker = target / MARKER
        if not marker.is_file() and (not (target.is_dir() and any(target.iterdir()))
                                     or earlier_results_folder(target)):
            target.mkdir(parents=True, exist_ok=True)
            marker.write_text(MARKER_TEXT, encoding="utf-8")
    except OSError as error:
        raise _os_error(target, error) from None
    return target


STDOUT_PIECE = 1 << 20  # bytes written to stdout at a time (`write_stdout`)


def write_stdout(text: str) -> None:
    """Writes `text` (UTF-8) to stdout in pieces of a MiB, each flushed: a reader that goes away part way
    (`| head`) then shows as a BrokenPipeError (the command ends with exit 141), where one large write of a
    closed pipe could end short without one and the command exit 0 with its output cut."""
    sys.stdout.flush()  # whatever text is buffered goes first
    out = getattr(sys.stdout, "buffer", None)
    if out is None:  # stdout replaced by a text-only stream (in-process callers)
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    data = memoryview(text.encode("utf-8"))
    for start in range(0, len(data), STDOUT_PIECE):
        out.write(data[start:start + STDOUT_PIECE])
        out.flush()


def write_text_atomic(path: Path, text: str) -> Path:
    """Writes `text` to `path` atomically; `-` writes it to stdout (`write_stdout`)."""
    if str(path) == STDOUT:
        write_stdout(text)
        return Path(path)
    with atomic_file(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def json_text(content) -> str:
    """JSON as routesim saves it: sorted keys, so equal content gives equal bytes."""
    return json.dumps(content, indent=2, sort_keys=True, default=str) + "\n"


def finite_json(content):
    """`content` with every NaN or infinite float replaced by None: JSON has no such numbers, and a reader
    of `--json` output must be able to parse it with any JSON parser."""
    if isinstance(content, float):
        return content if math.isfinite(content) else None
    if isinstance(content, dict):
        return {key: finite_json(value) for key, value in content.items()}
    if isinstance(content, (list, tuple)):
        return [finite_json(value) for value in content]
    return content


def json_output(content) -> str:
    """JSON for `--json`: always valid (no NaN, no Infinity), non-JSON values written as text."""
    return json.dumps(finite_json(content), indent=2, default=str, allow_nan=False)


def write_json_atomic(path: Path, content) -> Path:
    return write_text_atomic(path, json_text(content))


# A text cell starting with one of these is a formula to a spreadsheet (OWASP, "CSV Injection"): `=`, `+`,
# `-` and `@` start one, a tab or carriage return can hide one after a cell separator.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with every text cell that starts with a FORMULA_TRIGGERS character prefixed by a single quote,
    as OWASP advises, so that a spreadsheet opening the CSV shows it as text and runs nothing. Numeric
    columns (a negative number) are left as they are: a spreadsheet reads those as numbers, not formulas."""
    import polars as pl

    pattern = "^[" + "".join(FORMULA_TRIGGERS).replace("-", "\\-") + "]"
    text = [name for name, dtype in frame.schema.items() if dtype in (pl.String, pl.Categorical, pl.Enum)]
    return frame.with_columns(
        pl.when(pl.col(name).cast(pl.String).str.contains(pattern)).then(pl.lit("'") + pl.col(name).cast(pl.String))
        .otherwise(pl.col(name).cast(pl.String)).alias(name) for name in text)


def write_csv_atomic(frame: pl.DataFrame, path: Path) -> Path:
    """`frame` as CSV with formula-safe text cells (`csv_safe`), atomically."""
    with atomic_file(path) as temporary:
        csv_safe(frame).write_csv(temporary)
    return Path(path)


def write_parquet_atomic(frame: pl.DataFrame, path: Path) -> Path:
    with atomic_file(path) as temporary:
        frame.write_parquet(temporary)
    return Path(path)
