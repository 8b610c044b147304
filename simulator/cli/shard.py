"""`routesim shard`: split a data folder into shards by hashed request id."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from simulator.cli.console import console


def register(app: typer.Typer) -> None:
    @app.command()
    def shard(
        data: Annotated[Path, typer.Argument(help="data folder to split")],
        shards: Annotated[int, typer.Option("--shards", help="how many shards")],
        out: Annotated[Path, typer.Option("--out", "-o", help="folder to write DIR/shard=K/ into")],
        force: Annotated[bool, typer.Option(help="replace OUT if it already holds files")] = False,
    ):
        """Split a data folder into shards by hashed request id, each a data folder of its own (OUT/shard=K/)."""
        from simulator.core.shards import write_shards

        manifest = write_shards(data, shards, out, force=force)
        console.print(f"wrote {manifest['shards']} shards of {sum(manifest['requests']):,} requests to {out} "
                      f"(requests per shard: {min(manifest['requests']):,} to {max(manifest['requests']):,})",
                      highlight=False)
