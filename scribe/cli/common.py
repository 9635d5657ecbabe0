"""What the CLI commands share: exit codes, output-path checks, reading counts."""

from __future__ import annotations

import argparse
from pathlib import Path

EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(ValueError):
    """Bad command-line usage found after parsing (exit status 2)."""


def check_output(path: str, suffixes: tuple[str, ...], option: str) -> Path:
    """``path`` as a Path, checked before any work: known suffix, existing folder."""
    out = Path(path)
    if not out.name.lower().endswith(suffixes):
        raise UsageError(f"{option} {path}: the file name must end with "
                         f"{' or '.join(suffixes)}")
    if not out.parent.exists():
        raise UsageError(f"{option} {path}: folder {out.parent} does not exist")
    if out.is_dir():
        raise UsageError(f"{option} {path}: is a directory")
    return out


def add_counts_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layer", default=None,
                        help="AnnData layer holding the raw counts (default: .X)")
    parser.add_argument("--transpose", action="store_true",
                        help="the file stores genes as rows (e.g. a 10x matrix.mtx)")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def load_fit(path: str):
    """``scribe.load`` with a one-line error for a missing or foreign file."""
    from scribe.svi.io import load

    if not Path(path).exists():
        raise UsageError(f"{path}: no such file")
    try:
        return load(path)
    except (ValueError, OSError) as error:
        raise UsageError(f"{path}: not a scribe fit ({error})") from error
