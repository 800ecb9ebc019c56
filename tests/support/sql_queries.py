"""The named statements of sql/queries.sql, as a dict name -> SQL, for the SQL tests."""

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

QUERIES_FILE = Path(__file__).resolve().parents[2] / "sql" / "queries.sql"
_HEADER = re.compile(r"^--[ \t]*name:[ \t]*([a-z_][a-z0-9_]*)[ \t]*$", re.MULTILINE)

# The SPEC's example segments, which both SQL test modules seed.
VOICE, VAS, D30, D50 = (
    "AVITO_VOICE_MESSAGES",
    "AVITO_PERFORMANCE_VAS",
    "AVITO_DISCOUNT_30",
    "AVITO_DISCOUNT_50",
)


def load_queries(path: Path = QUERIES_FILE) -> dict[str, str]:
    """Each `-- name: x` header and the lines up to the next one; whole-line comments dropped.

    Comments go because psycopg reads every %(...)s, even inside them. Text before the first
    header is the file's preamble. A name twice or a header without SQL is an error.
    """
    _preamble, *named = _HEADER.split(path.read_text(encoding="utf-8"))
    queries: dict[str, str] = {}
    for name, chunk in zip(named[::2], named[1::2], strict=True):
        lines = [line.rstrip() for line in chunk.splitlines()]
        sql = "\n".join(line for line in lines if line.strip() and not line.lstrip().startswith("--"))
        if not sql:
            raise ValueError(f"{path}: statement {name!r} has no SQL")
        if name in queries:
            raise ValueError(f"{path}: statement {name!r} is named twice")
        queries[name] = sql
    return queries


SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
ADMIN_DSN = os.environ.get("SEGMENTS_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test")


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """A new database with schema.sql and buckets.sql applied; dropped afterwards. Yields its DSN."""
    import psycopg
    from psycopg import sql

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = psycopg.conninfo.make_conninfo(ADMIN_DSN, dbname=name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute((SQL_DIR / "schema.sql").read_text(encoding="utf-8"))
            conn.execute((SQL_DIR / "buckets.sql").read_text(encoding="utf-8"))
        yield dsn
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
