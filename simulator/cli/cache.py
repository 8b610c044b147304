"""`routesim cache ls` and `routesim cache clear`: the compiled layouts kept per data fingerprint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from simulator.cli.console import console, print_table

CacheDir = Annotated[Path | None, typer.Option(help="the cache folder (default: --cache-dir of routesim, else "
                                                    "$XDG_CACHE_HOME/routesim)")]


def _size(count: int) -> str:
    from simulator.core.formats import bytes_text

    return bytes_text(count)


def _not_made(root: Path, line: str) -> None:
    """Prints `line` (with {count}, {root} and {names}) when the cache folder holds entries routesim did not
    make, which it never lists or removes: without it a user's file there would be passed over in silence."""
    from simulator.core.layout import not_made_by_routesim

    found = not_made_by_routesim(root)
    if found:
        names = ", ".join(str(path) for path in found[:10])
        names += f", and {len(found) - 10} more" if len(found) > 10 else ""
        count = f"{len(found)} entr{'y' if len(found) == 1 else 'ies'}"
        console.print(line.format(count=count, root=root, names=names), highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    group = typer.Typer(no_args_is_help=True, help="List or clear the compiled layouts of data folders.")
    app.add_typer(group, name="cache")

    @group.command("ls")
    def ls(cache_dir: CacheDir = None):
        """List the cached layouts, most recently used first: fingerprint, the data folders holding that content,
        requests, size."""
        import datetime as dt

        from rich.table import Table

        from simulator.core.layout import cache_root, entries

        root = cache_root(cache_dir)
        found = entries(root)
        table = Table(title=f"routesim cache: {root}")
        for column in ("fingerprint", "data folder", "requests", "slots", "size", "last used (UTC)"):
            table.add_column(column, justify="right" if column in ("requests", "slots", "size") else "left")
        for entry in found:
            used = dt.datetime.fromtimestamp(entry.last_used_ns / 1e9, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
            # A layout is shared by every folder with the same content: each one listed, one a line. A folder
            # that holds other content now, or is gone, is not; one changed since routesim read it may.
            folders = [folder + (" (changed since read)" if folder in entry.changed else "")
                       for folder in entry.sources] or ["none known now"]
            table.add_row(entry.fingerprint, "\n".join(folders), f"{entry.requests:,}", str(entry.slots),
                          _size(entry.bytes), used)
        print_table(console, table)
        console.print(f"{len(found)} layout{'' if len(found) == 1 else 's'}, "
                      f"{_size(sum(entry.bytes for entry in found))}", highlight=False)
        _not_made(root, "{count} routesim did not make in {root}, not listed and never removed: {names}")

    @group.command("clear")
    def clear(cache_dir: CacheDir = None):
        """Remove every cached layout; the next use of each data folder validates and builds it again. Only what
        routesim made is removed; anything else in the folder is left, and named."""
        from simulator.core.layout import cache_root, entries
        from simulator.core.layout import clear as clear_cache

        root = cache_root(cache_dir)
        removed = clear_cache(root)
        console.print(f"removed {len(removed)} layout{'' if len(removed) == 1 else 's'} "
                      f"({_size(sum(entry.bytes for entry in removed))}) from {root}", highlight=False)
        in_use = entries(root)
        if in_use:
            console.print(f"left {len(in_use)} layout{'' if len(in_use) == 1 else 's'} a running command reads "
                          "(routesim cache clear again once it ends)", highlight=False)
        _not_made(root, "left {count} routesim did not make in {root}: {names}")
