"""Where the project's shipped folders are, for commands whose defaults point into them."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
SCENARIOS = PROJECT / "scenarios"
REPORTS = PROJECT / "reports"
DATA = PROJECT / "data"
CACHE = PROJECT / ".cache"
SHARED_PUBLIC_DATA = PROJECT.parent / "shared" / "public-data"


def relative(path: Path, start: Path) -> str:
    """`path` as written in a file that lives in `start`: relative, with forward slashes."""
    return Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix()
