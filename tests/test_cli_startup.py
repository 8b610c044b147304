"""`routesim --help` and every subcommand's help load none of the heavy libraries (timed by `routesim bench`)."""

from __future__ import annotations

import json
import subprocess
import sys

from simulator.cli.bench import help_commands

# pydantic: typer's option converters import it, and rich's console: together they were half of `--help`.
HEAVY = ["polars", "numpy", "sqlglot", "altair", "duckdb", "pyarrow", "vl_convert", "simulator.core.engine",
         "pydantic", "rich.console"]

# Runs every help in one fresh interpreter and prints, per command, the heavy modules loaded by then.
PROBE = """
import json, sys
from simulator.cli import main
commands, heavy = json.loads(sys.argv[1]), json.loads(sys.argv[2])
loaded = {}
for arguments in commands:
    sys.argv = ["routesim", *arguments]
    try:
        main()
    except SystemExit:
        pass
    loaded[" ".join(arguments)] = [name for name in heavy if name in sys.modules]
print("LOADED" + json.dumps(loaded))
"""


def test_every_help_starts_without_the_heavy_libraries():
    commands = help_commands()
    assert ["replay", "--help"] in commands and ["import", "litellm", "--help"] in commands
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(commands), json.dumps(HEAVY)],
                          capture_output=True, text=True, check=True)
    loaded = json.loads(done.stdout.rsplit("LOADED", 1)[1])
    assert len(loaded) == len(commands)
    assert {command: names for command, names in loaded.items() if names} == {}


def test_a_command_run_directly_keeps_its_whole_name_in_usage_and_errors(cli):
    helped = cli("import", "litellm", "--help")
    assert helped.code == 0 and helped.out.startswith("Usage: routesim import litellm ")
    wrong = cli("import", "litellm", "--no-such-option")
    assert wrong.code == 2 and "routesim import litellm --help" in wrong.err and "--no-such-option" in wrong.err
    unknown = cli("no-such-command")
    assert unknown.code == 2 and "No such command" in unknown.err
