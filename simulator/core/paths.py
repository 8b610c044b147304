"""Where the project's shipped folders are, for commands whose defaults point into them."""

from __future__ import annotations

from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
SCENARIOS = PROJECT / "scenarios"
REPORTS = PROJECT / "reports"
DATA = PROJECT / "data"
CACHE = PROJECT / ".cache"
SHARED_PUBLIC_DATA = PROJECT.parent / "shared" / "public-data"
