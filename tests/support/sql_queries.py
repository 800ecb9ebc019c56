"""The named statements of sql/queries.sql, as a dict name -> SQL, for the SQL tests."""

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

    Connection = psycopg.Connection[dict[str, Any]]

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


# --- an import's file, read and applied as the header of sql/queries.sql says ---------------------

BOM = b"\xef\xbb\xbf"
NOT_UTF8 = "not UTF-8 text"


def data_lines(data: bytes) -> list[tuple[int, str, str | None]]:
    """(line number, text, the reader's error) of each data line of an import's file, by the SPEC's
    rules: UTF-8 (a BOM allowed), `\\r\\n` read as `\\n`, blank lines and a first line `user_id`
    skipped, lines numbered from 1 as an editor shows them. Only text that is not UTF-8 has an
    error here; whether the text is a user id is the twin's to say (import_line_error)."""
    lines = data.removeprefix(BOM).split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the last line's end
    found: list[tuple[int, str, str | None]] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.removesuffix(b"\r")
        if not line.strip() or (number == 1 and line == b"user_id"):
            continue
        try:
            found.append((number, line.decode("utf-8"), None))
        except UnicodeDecodeError:
            found.append((number, line.decode("utf-8", "replace"), NOT_UTF8))
    return found


QUERIES = load_queries()


def _run(conn: "Connection", name: str, **params: Any) -> list[dict[str, Any]]:
    cursor = conn.execute(QUERIES[name], params)
    return cursor.fetchall() if cursor.description else []


def apply_line(
    conn: "Connection", import_id: str, line: int, value: str, now: datetime, error: str | None = None
) -> str | None:
    """One data line in its own transaction: its outcome ('applied', 'unchanged', 'duplicate' or
    'rejected'), or None when the import does not take it (not running, or stopped now)."""
    with conn.transaction():
        if error is None:
            error = _run(conn, "import_line_error", value=value)[0]["error"]
        if error is not None:
            kept = _run(conn, "reject_import_line", import_id=import_id, line=line, value=value, error=error)
            return "rejected" if kept else None
        user_id = int(value)
        _run(conn, "lock_user", user_id=user_id)
        _run(conn, "expire_memberships", user_id=user_id, now=now)
        (row,) = _run(conn, "apply_import_line", import_id=import_id, line=line, user_id=user_id, now=now)
    if row["stop"] is not None:
        with conn.transaction():
            _run(conn, "fail_import", import_id=import_id, failure=row["stop"], now=now)
    return row["outcome"]


def import_file(conn: "Connection", import_id: str, data: bytes, now: datetime) -> dict[int, str | None]:
    """The upload of `data` arrived: start_import, each data line (apply_line), finish_import. Each
    line's outcome; nothing when the import did not start (a later upload, or it ended)."""
    lines = data_lines(data)
    with conn.transaction():
        started = _run(conn, "start_import", import_id=import_id, lines=len(lines), bytes=len(data), now=now)
    if not started or started[0]["status"] != "running":
        return {}
    outcomes = {line: apply_line(conn, import_id, line, value, now, error) for line, value, error in lines}
    with conn.transaction():
        _run(conn, "finish_import", import_id=import_id, now=now)
    return outcomes
