"""The ``moa-graph`` command: ask, chat, batch, serve and eval, with progress on stderr.

Exit status: 0 on success, 2 for bad usage or settings, 1 when the run fails, 130 when stopped
by Ctrl-C (SIGINT) and 143 by SIGTERM. One Ctrl-C or SIGTERM stops the run: no new work
starts, calls in flight are cancelled, what is written stays whole, and the command says how
to go on; a second Ctrl-C exits at once.
"""

import argparse
import difflib
import logging
import os
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Sequence
from types import FrameType
from typing import Any, NoReturn

from moa_graph import __version__, sync
from moa_graph.cli import ask, batch, eval, serve
from moa_graph.cli.options import model_options, run_options
from moa_graph.errors import DegradedAnswer, MoAConfigError

COMMANDS = {"ask": ask.run, "chat": ask.run, "batch": batch.run, "eval": eval.run,
            "serve": serve.run}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with `argv` (default: ``sys.argv[1:]``) and return the exit status."""
    args = parser().parse_args(argv)
    stop = _Stop()
    # What the commands write holds prompts and answers (batch output, journals, caches, eval
    # runs, the embedded server's log): readable by its owner only.
    os.umask(0o077)
    # The commands report an answer made from fewer proposals themselves.
    warnings.simplefilter("ignore", DegradedAnswer)
    logging.basicConfig(format="moa-graph: %(message)s", stream=sys.stderr)
    logging.getLogger("moa_graph").setLevel(logging.INFO)
    try:
        return COMMANDS[args.command](args)
    except MoAConfigError as exc:
        return _fail(2, f"error: {exc}", args.debug)
    except KeyboardInterrupt:
        return _fail(128 + stop.signal, f"stopped by {stop.signal.name}", debug=False)
    except Exception as exc:
        return _fail(1, f"run failed: {type(exc).__name__}: {exc}", args.debug)
    finally:
        sync.close()  # cancel what a stopped run left on the loop, before the interpreter exits
        stop.restore()


class _Stop:
    """SIGTERM stops a run as Ctrl-C does (asyncio's runner cancels it on SIGINT)."""

    def __init__(self) -> None:
        self.signal = signal.SIGINT
        main_thread = threading.current_thread() is threading.main_thread()
        self._previous = signal.signal(signal.SIGTERM, self._on_sigterm) if main_thread else None

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signal.SIGTERM
        signal.raise_signal(signal.SIGINT)

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def parser() -> argparse.ArgumentParser:
    """Return the parser of every command (the CLI reference is its ``--help``)."""
    models = model_options()
    common = run_options(models)
    top = _Parser(
        prog="moa-graph",
        description="Mixture-of-Agents: several proposers answer, an aggregator synthesizes.",
        epilog="Settings not given fall back to MOA_* environment variables, then defaults.",
    )
    top.add_argument("--version", action="version", version=f"moa-graph {__version__}")
    commands = top.add_subparsers(dest="command", required=True)
    ask.add_parsers(commands, [common])
    serve.add_parser(commands)
    batch.add_parser(commands, [common])
    eval.add_parser(commands, [models])
    return top


def _fail(status: int, message: str, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"moa-graph: {message or 'failed'}", file=sys.stderr)
    return status


class _Parser(argparse.ArgumentParser):
    """argparse with "did you mean" for a misspelled option (its subcommands are ones too)."""

    _words: tuple[str, ...] = ()

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        """Parse as argparse does, keeping the words for `error`."""
        self._words = tuple(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        """Print the usage and the error, with the closest known option; exit 2."""
        known = [s for p in _parsers(self) for a in p._actions for s in a.option_strings]
        for word in self._words:
            name = word.split("=", 1)[0]
            if name.startswith("--") and name not in known:
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.7)
                if close:
                    message += f" (did you mean {close[0]}?)"
                    break
        super().error(message)


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """`parser` and its subcommands' parsers."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += list(action.choices.values())
    return found
