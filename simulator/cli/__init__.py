"""The `routesim` command: one module per command group, each declaring its options and calling the library.

- simulator.cli.replay: replay, validate, generate, demo, report
- simulator.cli.bench: bench
- simulator.cli.cache: cache ls, cache clear
- simulator.cli.shard: shard
- simulator.cli.data: import FORMAT, public-data
- simulator.cli.evals: lanes, gate
- simulator.cli.tuning: sweep, whatif, drift, prices import-litellm
- simulator.cli.served: coverage, estimate (served-only production logs)
- simulator.cli.gateway: import-config litellm, export litellm
- simulator.cli.views: the terminal tables they print

A new command is a function in one of these modules (or a new module with its own `register`), listed in
COMMAND_GROUPS. Command modules import the library only inside the command's body, so that `--help` starts
fast.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import signal
import sys
import typing
from pathlib import Path
from typing import Annotated

import typer

from simulator.cli import bench, cache, data, evals, gateway, replay, served, shard, tuning
from simulator.cli.console import BAD_INPUT, INTERNAL_ERROR, STDOUT_CLOSED, StdoutClosed, errors, inert
from simulator.core.errors import RoutesimError, visible

COMMAND_GROUPS = (replay, bench, cache, shard, data, evals, tuning, served, gateway)

APP_SETTINGS = dict(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                    help="Replay logged LLM traffic under routing policies: rules, cascades and retries.\n\n"
                         "Global option, before the command: --cache-dir DIR keeps the compiled layouts of data "
                         "folders in DIR (default: $XDG_CACHE_HOME/routesim).")


def _app(groups=COMMAND_GROUPS) -> typer.Typer:
    built = typer.Typer(**APP_SETTINGS)
    # A callback keeps the commands a group even when one command is registered (typer would otherwise
    # make a lone command the whole program).
    built.callback()(lambda: None)
    for group in groups:
        group.register(built)
    return built


app = _app()  # every command; registering is cheap, building their click commands is not


def _global_options(args: list[str]) -> list[str]:
    """Takes the global `--cache-dir DIR` (or `--cache-dir=DIR`) from before the command and returns the
    rest. It is read here rather than by a typer callback because typer converts a callback's options even
    for `--help`, and its converters import pydantic, which would double the time `--help` takes."""
    while args and args[0].split("=", 1)[0] == "--cache-dir":
        if "=" in args[0]:
            value, args = args[0].split("=", 1)[1], args[1:]
        elif len(args) > 1 and not args[1].startswith("-"):
            value, args = args[1], args[2:]
        else:
            value = ""
        if not value:
            raise RoutesimError("--cache-dir needs a folder", where="routesim --cache-dir",
                                fix="write 'routesim --cache-dir DIR COMMAND ...'")
        if not Path(value).exists() and value in _command_names():
            raise RoutesimError(f"--cache-dir needs a folder before the command; '{value}' is a command",
                                where="routesim --cache-dir",
                                fix=f"write 'routesim --cache-dir DIR {value} ...'")
        from simulator.core.layout import cache_root

        cache_root(Path(value))  # refuses a file, as the cache commands' own --cache-dir does
        # An environment variable, so that worker processes a command starts use the same cache.
        os.environ["ROUTESIM_CACHE_DIR"] = value
    return args


def _command_names() -> set[str]:
    """The names of routesim's commands (building them is slow: only for an error message)."""
    import typer.main

    return set(typer.main.get_command(app).commands)


def _print_error(label: str, text: str) -> None:
    """Prints an error; invisible characters from the input (a byte-order mark, a zero-width space) are
    shown escaped, so that what the message names can be typed back."""
    text = "\n".join(inert(line) for line in text.split("\n"))
    errors.print(f"[bold red]{label}:[/bold red] {text}", highlight=False, soft_wrap=True)


def _finite(ctx, param, value):
    """Refuses NaN and infinity in a float option: Python's float() takes 'nan' and 'inf', and a NaN passes
    every min/max check, since it compares false with everything."""
    values = value if isinstance(value, (list, tuple)) else [value]
    for item in values:
        if isinstance(item, float) and not math.isfinite(item):
            raise typer.BadParameter(f"{item!r} is not a finite number", ctx=ctx, param=param)
    return value


@functools.cache
def _group_of_command() -> dict[str, typing.Any]:
    """The command group module that registers each top-level command name (sub-apps such as `import`
    included), found by registering each group on its own."""
    found = {}
    for group in COMMAND_GROUPS:
        probe = typer.Typer()
        group.register(probe)
        for info in probe.registered_commands:
            found[info.name or typer.main.get_command_name(info.callback.__name__)] = group
        for info in probe.registered_groups:
            found[info.name] = group
    return found


def command_line(args: list[str]) -> tuple[typing.Any, list[str], str]:
    """The click command that runs `args`, the arguments left for it, and its name as the usage line
    shows it.

    typer reads the signature of every command it builds, which costs more than a small command's whole
    run, so only the group that holds the named command is built (all of them for `routesim --help` or an
    unknown command, whose error lists them). The command named is then called directly rather than
    through its groups: typer converts each group's own `--help` flag even when it is not given, and its
    converters import pydantic, which would double the time `--help` takes. Our groups take no options of
    their own, so nothing is lost.
    """
    name = next((arg for arg in args if not arg.startswith("-")), None)
    group = _group_of_command().get(name)
    command = _with_finite_floats(typer.main.get_command(_app((group,) if group else COMMAND_GROUPS)))
    path = ["routesim"]
    while args and args[0] in getattr(command, "commands", {}):
        path.append(args[0])
        command, args = command.commands[args[0]], args[1:]
    return command, args, " ".join(path)


def _with_finite_floats(command):
    for param in command.params:
        annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
        if annotation is float or float in typing.get_args(annotation):
            given = param.callback
            param.callback = _finite if given is None else (
                lambda ctx, param, value, given=given: given(ctx, param, _finite(ctx, param, value)))
    for sub in getattr(command, "commands", {}).values():
        _with_finite_floats(sub)
    return command


def _stdout_gone() -> bool:
    """Whether stdout is a pipe (or socket) whose reader has closed it: poll reports an error or hang-up on
    it. True when that cannot be asked (no poll, no file descriptor): the broken pipe is then taken as
    stdout's, the likeliest."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, ValueError, OSError):
        return True


def _broken_pipes_past_typer(command) -> None:
    """Makes a BrokenPipeError of the command reach main(): typer's main catches it (typer.core._main, as
    an OSError with errno EPIPE) and exits 1 without a word, the failed gate's code. Only the writes that
    rich does not make (typer.echo, sys.stdout.write) raise it; rich's console raises StdoutClosed itself."""
    invoke = command.invoke

    def invoking(ctx):
        try:
            return invoke(ctx)
        except BrokenPipeError as error:
            if _stdout_gone():
                raise StdoutClosed from error
            # Some other pipe broke (a worker's): not the reader leaving, so not a quiet exit 141.
            raise RuntimeError(f"a pipe other than stdout broke: {error}") from error

    command.invoke = invoking


def _end_on_closed_stdout() -> typing.NoReturn:
    """Exits STDOUT_CLOSED (141, 128 + SIGPIPE) without a word. stdout is pointed at /dev/null first, else
    Python's last flush of it at exit fails again and prints "Exception ignored ... BrokenPipeError" (the
    Python docs' note on SIGPIPE, in the `signal` module)."""
    with contextlib.suppress(OSError, ValueError):  # no file descriptor (stdout replaced in-process)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(STDOUT_CLOSED)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def _usage_error(error: typer.TyperException, command: str) -> None:
    """A usage error (click's UsageError: an option's value the parser refuses, an unknown option, a missing
    argument) with what is wrong, where (the option, else the command) and how to fix it, as routesim's own
    errors are, in place of click's usage banner."""
    path = error.ctx.command_path if error.ctx is not None else command
    param = getattr(error, "param", None)
    option = param is not None and param.param_type_name == "option"
    # An option by its flags; an argument, which the message names as its usage line does, by the command.
    where = ", ".join(param.opts) if option else path
    what = error.format_message()
    rule = _refused_range(error)  # typer checks min/max with pydantic: its rule said in words
    if option and rule is not None:
        what = f"{param.opts[0]} {rule[0]} (got {rule[1]})"
    _bad_input(what, where, f"see '{path} --help' for its usage")


def _refused_range(error: Exception) -> tuple[str, str] | None:
    """(what the value must be, the value given) when the parser refused an option's value on a rule pydantic
    checked (the error's cause) and simulator.core.validation words it; else None."""
    from pydantic import ValidationError

    from simulator.core.validation import plain_rule

    cause = error.__cause__
    if not isinstance(cause, ValidationError) or cause.error_count() != 1:
        return None
    [item] = cause.errors()
    rule = plain_rule(item)
    return None if rule is None else (rule, str(item.get("input")))


def _bad_input(what: str, where: str, fix: str) -> None:
    _print_error("error", RoutesimError(what, where=where, fix=fix).render(visible))
    sys.exit(BAD_INPUT)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread (as SIGINT raises KeyboardInterrupt) so that the `finally` blocks of
    the output writers (simulator.core.outputs) remove their staging files and folders before the exit."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated


def raise_on_sigterm():
    """Makes SIGTERM raise Terminated in the main thread rather than end the process where it stands;
    returns the handler it replaces."""
    return signal.signal(signal.SIGTERM, _raise_terminated)


# polars' allocator (jemalloc) hands the pages it frees back to the system within 0.5-1 s (polars' own
# setting); here it keeps them for 3 s. A replay in chunks frees and allocates the same column-sized blocks
# chunk after chunk, about a second apart, and a page handed back is faulted in anew, at about 2 s per GB on
# the development machine: the system time of a 10M-request replay in chunks fell from 4.2-4.5 s to 2.4 s.
# Kept for good (-1), its peak rose by 0.1-0.3 GB more, and a replay in one piece peaked 2 GB higher
# (README "Benchmark"). It must be set before polars loads; a user's own setting wins.
KEEP_FREED_PAGES = ("_RJEM_MALLOC_CONF", "dirty_decay_ms:3000,muzzy_decay_ms:3000")


def main() -> None:
    """The console script: runs the command, and turns every failure into its exit code without a traceback.

    Exit 2 is bad input, whichever layer finds it: routesim's own checks (RoutesimError), usage errors, a
    file routesim cannot read or write (OSError), input nested too deeply for Python's stack, and the
    data-dependent errors and panics of polars (a Parquet page that cannot be decoded, a value that cannot
    be computed). Exit 3 is left for anything else: a bug. SIGINT (exit 130) and SIGTERM (exit 143) end the
    command as exceptions, so a half-written output's staging file or folder is removed on the way out.
    A stdout closed by its reader (`routesim replay ... | head -3`) ends the command quietly with exit 141
    (128 + SIGPIPE, what a shell reports for a program a closed pipe stopped).
    """
    os.environ.setdefault(*KEEP_FREED_PAGES)
    from simulator.core.outputs import begin_run

    begin_run()
    previous = raise_on_sigterm()
    command = " ".join(["routesim", *[arg for arg in sys.argv[1:3] if not arg.startswith("-")]])
    try:
        # Without standalone mode click returns the code of a typer.Exit instead of exiting.
        args = _global_options(sys.argv[1:])
        # `command` stays the words typed, which the errors below name as where they happened.
        click_command, args, prog_name = command_line(args)
        _broken_pipes_past_typer(click_command)
        code = click_command.main(args=args, prog_name=prog_name, standalone_mode=False) or 0
        try:  # what is still buffered: a closed stdout shows here rather than at the interpreter's exit
            sys.stdout.flush()
        except BrokenPipeError as error:
            raise StdoutClosed from error
        sys.exit(code)
    except StdoutClosed:
        _end_on_closed_stdout()
    except RoutesimError as error:
        _print_error("error", error.render(visible))
        sys.exit(BAD_INPUT)
    except (typer.Abort, KeyboardInterrupt):
        errors.print("aborted")
        sys.exit(130)
    except Terminated:
        errors.print("terminated")
        sys.exit(128 + signal.SIGTERM)
    except typer.TyperException as error:  # click's errors (typer carries its own click)
        if getattr(error, "exit_code", None) == BAD_INPUT and hasattr(error, "ctx"):
            _usage_error(error, command)  # a usage error: a value or option the parser refuses
        error.show()  # any other, as standalone mode would print it
        sys.exit(getattr(error, "exit_code", BAD_INPUT))
    except OSError as error:
        _bad_input(f"cannot read or write a file: {error.strerror or _first_line(error)}",
                   str(error.filename or command), "check the path, its permissions and the space left on the disk")
    except RecursionError:
        _bad_input("the input is nested too deeply to be read", command,
                   "see 'Reliability' in the README for the limits on nesting")
    except MemoryError:
        _bad_input("the input does not fit in memory", command,
                   "replay a window or a sample of the data; see 'Reliability' in the README")
    except BaseException as error:  # polars' PanicException derives from BaseException, not Exception
        if isinstance(error, SystemExit):
            raise
        if os.environ.get("ROUTESIM_DEBUG"):
            raise
        if _is_data_error(error):
            _bad_input(f"the data cannot be processed: {_first_line(error)}", command,
                       "check the data with 'routesim validate'; a Parquet file may be corrupt or hold values "
                       "of an unexpected type. If the input is valid, report this as a bug")
        _print_error("internal error", f"{type(error).__name__}: {error}\n"
                     "  this is a bug in routesim; rerun with ROUTESIM_DEBUG=1 for the traceback")
        sys.exit(INTERNAL_ERROR)
    finally:  # main() may run inside another program (the tests): leave its SIGTERM handling as it was
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _is_data_error(error: BaseException) -> bool:
    """polars' panics (caught by name: pyo3's PanicException is not importable from polars) and the polars
    errors that depend on the data's values rather than on how routesim built the query."""
    if type(error).__name__ == "PanicException":
        return True
    import polars as pl

    return isinstance(error, (pl.exceptions.ComputeError, pl.exceptions.InvalidOperationError,
                              pl.exceptions.SchemaError, pl.exceptions.SQLInterfaceError))
