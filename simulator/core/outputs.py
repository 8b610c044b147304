"""Writing outputs so that a failed run never leaves a half-written file or folder behind.

Everything routesim writes goes through here: a temporary file or folder beside the target, renamed onto
it only once complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from simulator.core.errors import RoutesimError


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; it replaces `path` when the block completes."""
    path = Path(path)
    if path.is_dir():
        raise RoutesimError(f"{path} is a folder, not a file", where=str(path), fix="give a file name to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, 0o644)  # mkstemp makes the file private; outputs are meant to be shared
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """A temporary folder beside `target` to fill; it replaces `target` (and whatever it held) when the block
    completes, and a failure leaves `target` as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.writing-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the folder it becomes is an ordinary one
    retired = target.with_name(f".{target.name}.replaced-{os.getpid()}")
    try:
        yield staging
        if target.exists():
            os.replace(target, retired)
        os.replace(staging, target)
    except BaseException:
        if retired.exists() and not target.exists():
            os.replace(retired, target)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)


def write_text_atomic(path: Path, text: str) -> Path:
    with atomic_file(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def json_text(content) -> str:
    """JSON as routesim saves it: sorted keys, so equal content gives equal bytes."""
    return json.dumps(content, indent=2, sort_keys=True, default=str) + "\n"


def write_json_atomic(path: Path, content) -> Path:
    return write_text_atomic(path, json_text(content))


def write_parquet_atomic(frame: pl.DataFrame, path: Path) -> Path:
    with atomic_file(path) as temporary:
        frame.write_parquet(temporary)
    return Path(path)
