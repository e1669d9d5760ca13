"""The `tokenplan` command: one entry point, one module per subcommand.

Each module in `streams.cli` exposes `register(subparsers)`, which adds its
parser and sets `func` to a callable `(args) -> int` (the exit code). Modules are
imported lazily so `tokenplan replay` never pays for importing faust.
"""
from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand name -> module under streams.cli that registers it.
SUBCOMMANDS: dict[str, str] = {
    "worker": "streams.cli.worker",
    "replay": "streams.cli.replay",
    "quote": "streams.cli.quote",
    "simulate": "streams.cli.simulate",
    "audit": "streams.cli.audit",
    "bench": "streams.cli.bench",
    "keys": "gateway.cli.keys",
    "gateway": "gateway.cli.serve",
    "upstream-sim": "gateway.cli.upstream_sim",
    "gateway-traffic": "gateway.cli.traffic",
    "projector": "projections.cli",
    "dashboard": "projections.dashboard.cli",
}


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """Build the parser; import only the selected subcommand's module (all for --help)."""
    parser = argparse.ArgumentParser(
        prog="tokenplan",
        description="Event-sourced metering and quota for Token Plan subscriptions.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        if selected is not None and name != selected:
            subparsers.add_parser(name, help=f"(run 'tokenplan {name} --help')")
            continue
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one subcommand; return its exit code."""
    argv = sys.argv[1:] if argv is None else argv
    first = next((a for a in argv if not a.startswith("-")), None)
    selected = first if first in SUBCOMMANDS else None
    parser = build_parser(selected)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
