"""Writing output files so that a failed run never leaves a half-written one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from simulator.errors import RoutesimError


def write_text_atomic(path: Path, text: str) -> Path:
    """Writes `text` to a temporary file beside `path`, then renames it into place."""
    path = Path(path)
    if path.is_dir():
        raise RoutesimError(f"{path} is a folder, not a file", where=str(path), fix="give a file name to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, 0o644)  # mkstemp makes the file private; outputs are meant to be shared
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
