"""Command-line options the benchmarks share."""
from __future__ import annotations

import argparse


def add_setting_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a GEOQUEUE_ setting for the stack, e.g. IMMERSAL_MAX_PARALLEL=8 (default: the fleet's)")


def settings_from(args: argparse.Namespace) -> dict[str, str]:
    """--setting NAME=VALUE as the stack's environment: {"GEOQUEUE_NAME": "VALUE"}."""
    return {f"GEOQUEUE_{name.upper()}": value for name, value in (item.split("=", 1) for item in args.setting)}
