"""What `history`, `diff` and `gate` share: which database (--output-dir, --set history.url=...)."""

from __future__ import annotations

import argparse

from harness.config import HistorySection, RunSection, parse_set
from harness.errors import ConfigError
from harness.history.db import history_url


def add_database_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--output-dir",
        metavar="DIR",
        default=RunSection.output_dir,
        help=f"where the runs are; the history is DIR/history.sqlite unless history.url is set. "
        f"Default: {RunSection.output_dir}",
    )
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="history.url=URL",
        help="the database, e.g. --set history.url=postgresql+psycopg://user@host/db (as for a run)",
    )


def database_url(args: argparse.Namespace) -> str:
    url = HistorySection.url
    for item in args.sets:
        path, value = parse_set(item)
        if path != ["history", "url"] or not isinstance(value, str):
            raise ConfigError(f"--set {item!r}: only history.url=URL applies here")
        url = value
    return history_url(url, args.output_dir)
