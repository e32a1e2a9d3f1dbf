"""Open the history database: the URL from [history], SQLite's settings for several writers, the schema
created or migrated, and one clear HistoryError for a file that is not (or not our) database.

    engine = open_history(history_url(cfg.history.url, cfg.run.output_dir))

SQLite (the default, `<output dir>/history.sqlite`): WAL journal, a 60 s busy timeout, and every
transaction begun with BEGIN IMMEDIATE, so that two runs finishing at once queue for the write lock instead
of one failing with "database is locked". PostgreSQL: the schema set-up holds an advisory lock.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from harness.errors import HarnessError
from harness.history.schema import SCHEMA_VERSION, metadata, schema_version

log = logging.getLogger(__name__)

DEFAULT_FILE = "history.sqlite"
BUSY_TIMEOUT_MS = 60_000
_PG_LOCK_KEY = 0x7432_6968  # advisory lock id for schema set-up ("t2ih")

# version -> function that brings a database at version-1 to version (inside one transaction)
MIGRATIONS: dict[int, Callable[[Connection], None]] = {}


class HistoryError(HarnessError):
    """The history database cannot be used: not a database, a foreign one, a newer schema, no driver."""


def history_url(url: str, output_dir: str | Path) -> str:
    """[history] url, or SQLite at <output_dir>/history.sqlite when it is ""."""
    if url:
        return url
    return f"sqlite:///{Path(output_dir) / DEFAULT_FILE}"


def shown(url: str) -> str:
    """The URL as it may be printed (password hidden)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def open_history(url: str) -> Engine:
    """An engine on a database whose schema is current (created or migrated here)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise HistoryError(f"history.url {url!r} is not a database URL (e.g. sqlite:///runs/history.sqlite)") from exc
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = _sqlite_engine(url, parsed.database)
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except (NoSuchModuleError, ImportError) as exc:
        raise HistoryError(f"history database {shown(url)}: no driver for it ({exc})") from exc
    try:
        _ensure_schema(engine)
    except HistoryError:
        engine.dispose()
        raise
    except SQLAlchemyError as exc:
        engine.dispose()
        orig = getattr(exc, "orig", None) or exc
        raise HistoryError(f"history database {shown(url)} cannot be used: {str(orig).splitlines()[0]}") from exc
    return engine


def _sqlite_engine(url: str, database: str | None) -> Engine:
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _ensure_schema(engine: Engine) -> None:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        tables = set(inspect(conn).get_table_names())
        ours = set(metadata.tables)
        if "schema_version" not in tables:
            foreign = tables & ours if conn.dialect.name != "sqlite" else tables
            if foreign:
                raise HistoryError(
                    f"history database {shown(str(engine.url))} is not a t2i-harness history "
                    f"(it has tables {', '.join(sorted(foreign))} but no schema_version); "
                    "point history.url at another database or file"
                )
            metadata.create_all(conn)
            conn.execute(schema_version.insert(), {"version": SCHEMA_VERSION, "applied_at": _now()})
            log.debug("history: created schema version %d in %s", SCHEMA_VERSION, shown(str(engine.url)))
            return
        current = conn.execute(select(schema_version.c.version).order_by(schema_version.c.version.desc())).scalar()
        if current is None:
            raise HistoryError(f"history database {shown(str(engine.url))}: schema_version is empty")
        if current > SCHEMA_VERSION:
            raise HistoryError(
                f"history database {shown(str(engine.url))} has schema version {current}, newer than this "
                f"harness's {SCHEMA_VERSION}; update the harness"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[version](conn)
            conn.execute(schema_version.insert(), {"version": version, "applied_at": _now()})
            log.info("history: migrated %s to schema version %d", shown(str(engine.url)), version)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
