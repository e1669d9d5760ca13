"""The projection database: engine, schema, offsets and the upserts the fold needs.

SQLAlchemy Core only, so SQLite and PostgreSQL run the same statements; the one
dialect-specific piece is which `INSERT ... ON CONFLICT` construct builds the upsert
(both dialects have it with the same meaning).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from sqlalchemy import Connection, Engine, Table, create_engine, event, inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from projections.tables import metadata, projector_offsets

__all__ = ["SchemaMismatch", "open_engine", "create_schema", "check_schema", "drop_schema", "load_offsets",
           "save_offsets", "upsert", "upsert_add", "engine_url"]

#: Our one PostgreSQL driver: psycopg 3.
PG_DRIVER = "postgresql+psycopg"
#: How long a SQLite writer waits for the dashboard's readers before failing.
SQLITE_BUSY_TIMEOUT_S = 30


def engine_url(url: str) -> str:
    """`postgresql://...` -> the psycopg 3 driver (SQLAlchemy's default would be psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return PG_DRIVER + "://" + url[len(prefix):]
    return url


def open_engine(url: str) -> Engine:
    """An engine for TOKENPLAN_PROJECTIONS_URL; a SQLite file's folder is created, WAL on
    (so the dashboard reads while the projector writes)."""
    url = engine_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    database = parsed.database or ""
    if database in ("", ":memory:"):
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

        @event.listens_for(engine, "connect")
        def _wal(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
    return engine


class SchemaMismatch(RuntimeError):
    """A table made by an older projector lacks columns this one writes (nothing is altered in place)."""


def check_schema(engine: Engine) -> None:
    """Raise SchemaMismatch when an existing table lacks a column of ours: the fix is a re-projection
    (`tokenplan projector --rebuild`), which gives the same rows from the topics."""
    inspector = inspect(engine)
    present = set(inspector.get_table_names())
    for table in metadata.sorted_tables:
        if table.name not in present:
            continue
        missing = sorted({c.name for c in table.columns} - {c["name"] for c in inspector.get_columns(table.name)})
        if missing:
            raise SchemaMismatch(
                f"table {table.name} was made by an older projector and lacks {', '.join(missing)}; run "
                f"`tokenplan projector --rebuild` to project it again from the topics (webhook receivers "
                f"see those alerts again and dedupe them on alert_id)")


def create_schema(engine: Engine) -> None:
    """Create the tables that do not exist (idempotent); refuse tables of an older layout."""
    check_schema(engine)
    metadata.create_all(engine)


def drop_schema(engine: Engine) -> None:
    """Drop every projector table: the next start projects again from offset 0."""
    metadata.drop_all(engine)


def load_offsets(connection: Connection, topics: Iterable[str] | None = None) -> dict[tuple[str, int], int]:
    """(topic, partition) -> next offset to fold, as stored with the rows."""
    query = select(projector_offsets)
    if topics is not None:
        query = query.where(projector_offsets.c.topic.in_(list(topics)))
    return {(row.topic, row.partition): row.next_offset for row in connection.execute(query)}


def save_offsets(connection: Connection, offsets: Mapping[tuple[str, int], int]) -> None:
    """Store next offsets in the caller's transaction (the one that wrote the rows)."""
    rows = [{"topic": topic, "partition": partition, "next_offset": offset}
            for (topic, partition), offset in offsets.items()]
    upsert(connection, projector_offsets, rows, keys=("topic", "partition"))


def _insert(connection: Connection, table: Table):
    dialect = connection.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"projections support sqlite and postgresql, not {dialect}")


def upsert(connection: Connection, table: Table, rows: Sequence[Mapping], keys: Sequence[str],
           replace: Sequence[str] | None = None) -> None:
    """Insert rows; on a key conflict overwrite `replace` columns (default: all non-key)."""
    if not rows:
        return
    statement = _insert(connection, table)
    columns = replace if replace is not None else [name for name in rows[0] if name not in keys]
    if columns:
        statement = statement.on_conflict_do_update(
            index_elements=list(keys), set_={name: statement.excluded[name] for name in columns})
    else:
        statement = statement.on_conflict_do_nothing(index_elements=list(keys))
    connection.execute(statement, list(rows))


def upsert_add(connection: Connection, table: Table, rows: Sequence[Mapping], keys: Sequence[str],
               add: Sequence[str]) -> None:
    """Insert rows; on a key conflict add the `add` columns to the stored ones (counters)."""
    if not rows:
        return
    statement = _insert(connection, table)
    statement = statement.on_conflict_do_update(
        index_elements=list(keys), set_={name: table.c[name] + statement.excluded[name] for name in add})
    connection.execute(statement, list(rows))
