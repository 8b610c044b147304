"""The one error type users see: what is wrong, where, and how to fix it."""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Iterable


class RoutesimError(Exception):
    """A problem with the user's input. The CLI prints it without a traceback and exits with 2."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None):
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        lines = [self.what]
        if self.where:
            lines.append(f"  where: {self.where}")
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        return "\n".join(lines)


def visible(text: str) -> str:
    """`text` with every invisible or control character (byte-order marks, zero-width spaces, newlines)
    written as an escape such as \\ufeff, so a message never carries one the reader cannot see."""
    return "".join(f"\\u{ord(char):04x}" if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Co", "Cn")
                   else char for char in text)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' Did you mean 'x'?' when a close match exists, else ''. Used for every name a user can mistype.

    A suggestion with invisible characters is shown with them escaped (see `visible`)."""
    matches = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.6)
    return f" Did you mean '{visible(matches[0])}'?" if matches else ""
