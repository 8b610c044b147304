"""`routesim shard`: split a data folder into shards by hashed request id."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from simulator.cli.console import console
from simulator.core.errors import RoutesimError
from simulator.core.formats import counted

# --shards and --runner of the commands that run on shards (replay, sweep, gate).
ShardsOption = Annotated[Path | None, typer.Option(help="run on these shards of the scenario's data folder (written "
                                                   "by 'routesim shard'); the figures are the same")]
RunnerOption = Annotated[str, typer.Option(help="with --shards: 'local' (a process per core) or 'ray' (Ray tasks; "
                                           "RAY_ADDRESS names a cluster)")]


def check_runner(shards: Path | None, runner: str) -> None:
    if shards is None and runner != "local":
        raise RoutesimError(f"--runner {runner} runs shards", where="--runner", fix="add --shards DIR")


def register(app: typer.Typer) -> None:
    @app.command()
    def shard(
        data: Annotated[Path, typer.Argument(metavar="DATA", help="data folder to split")],
        shards: Annotated[int, typer.Option("--shards", help="how many shards")],
        out: Annotated[Path, typer.Option("--out", "-o", help="folder to write DIR/shard=K/ into")],
        force: Annotated[bool, typer.Option(help="replace OUT when it holds files routesim did not write (a "
                                                 "folder routesim wrote is replaced without it)")] = False,
    ):
        """Split a data folder into shards by hashed request id, each a data folder of its own (OUT/shard=K/)."""
        from simulator.core.shards import write_shards

        manifest = write_shards(data, shards, out, force=force)
        total = counted(sum(manifest['requests']), 'request')
        console.print(f"wrote {counted(manifest['shards'], 'shard')} of {total} "
                      f"to {out} "
                      f"(requests per shard: {min(manifest['requests']):,} to {max(manifest['requests']):,})",
                      highlight=False)
