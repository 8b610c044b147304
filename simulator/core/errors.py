"""The one error type users see: what is wrong, where, and how to fix it."""

from __future__ import annotations

import difflib
import os
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path


# How a message breaks its own lines: the next line is indented. Any other newline in it came from a name.
LINE_BREAK = "\n  "


class RoutesimError(Exception):
    """A problem with the user's input. The CLI prints it without a traceback and exits with 2."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None):
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.render())

    def render(self, each: Callable[[str], str] | None = None) -> str:
        """What, then where and fix on lines of their own. `each` (`visible`, as the CLI prints it) is applied to
        where and fix whole (each one line) and to what between its own line breaks, which routesim always
        indents (a list of problems: "...:\\n  - a\\n  - b"), so that a newline inside a name (a slice, a key)
        cannot pass for a line of its own."""
        each = each or (lambda text: text)
        lines = [LINE_BREAK.join(each(part) for part in self.what.split(LINE_BREAK))]
        if self.where:
            lines.append(f"  where: {each(str(self.where))}")
        if self.fix:
            lines.append(f"  fix: {each(str(self.fix))}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Origin:
    """Where a path was given: the `key` of the YAML `file` that names it, `written` as it is there (relative
    to the file's folder). A loader that cannot use the path names this place, where the user fixes it."""

    file: Path
    key: str
    written: str

    def where(self) -> str:
        return f"{self.file}, key '{self.key}'"

    def error(self, what: str, wanted: str) -> RoutesimError:
        """The error of a path that cannot be used, reported where it was written; `wanted`: what the key
        should name instead."""
        return RoutesimError(what, where=self.where(), fix=f"point '{self.key}' in {self.file.name} at {wanted}")

    def shown(self, resolved: Path) -> str:
        """The path for a message: `resolved`, or, when the key names a symbolic link whose target is missing,
        the link and where it points (resolving followed the link, so the target alone names no key)."""
        link = Path(os.path.abspath(self.file.parent / self.written))
        if link.is_symlink() and not link.exists():
            return f"{link} (a symbolic link to {os.readlink(link)}, which does not exist)"
        return str(resolved)


def visible(text: str) -> str:
    """`text` with every invisible or control character (byte-order marks, zero-width spaces, newlines)
    written as an escape such as \\ufeff, so a message never carries one the reader cannot see. A lone
    surrogate (JSON's "\\ud800" reads as one) is escaped too: no UTF-8 output can hold it."""
    return "".join(f"\\u{ord(char):04x}" if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Co", "Cn", "Cs")
                   else char for char in text)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' Did you mean 'x'?' when a close match exists, else ''. Used for every name a user can mistype.

    A suggestion with invisible characters is shown with them escaped (see `visible`)."""
    matches = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.6)
    return f" Did you mean '{visible(matches[0])}'?" if matches else ""
