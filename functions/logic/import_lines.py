"""An import's file: which lines are user ids, how the file is cut into chunks, and the CSV of the
lines it rejected (docs/imports.md).

The file is UTF-8 text (a BOM allowed), one user id per line in canonical decimal, an optional first
line `user_id`, blank lines ignored; `\\r\\n` line ends are read as `\\n`. Line numbers count every
physical line from 1, blank ones and the header included, as a text editor shows them.
"""

from collections.abc import Iterable, Iterator
from typing import NamedTuple

from models.domain import ImportChunk
from models.formats import MAX_USER_ID, USER_ID_RE

BOM = b"\xef\xbb\xbf"
HEADER = "user_id"
MAX_LINES = 10_000_000  # data lines (not blank, not the header)
MAX_BYTES = 256 * 1024 * 1024
# A chunk is one job: at most this many lines, or about this many bytes (it ends at a line's end).
CHUNK_LINES = 5_000
CHUNK_BYTES = 256 * 1024
SHOWN_CHARACTERS = 64  # of a rejected line's value in the errors CSV
ERRORS_HEADER = "line;value;error\n"

NOT_UTF8 = "not UTF-8 text"
NOT_A_USER_ID = "not a user id: a positive integer in canonical decimal, like 1000"
TOO_LARGE = f"above the largest user id, {MAX_USER_ID}"


class Rejected(NamedTuple):
    line: int
    value: str
    error: str


class ChunkLines(NamedTuple):
    users: list[tuple[int, int]]  # (line number, user id) of each good line, in file order
    rejected: list[Rejected]


class FilePlan(NamedTuple):
    chunks: list[ImportChunk]
    lines: int  # data lines: not blank, not the header


def read_chunk(data: bytes, first_line: int) -> ChunkLines:
    """The good and the bad lines among a chunk's bytes (which start a line and end one)."""
    users: list[tuple[int, int]] = []
    rejected: list[Rejected] = []
    for number, raw in enumerate(_lines(data, first_line == 1), start=first_line):
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if _is_blank_or_header(line, number):
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            rejected.append(Rejected(number, line.decode("utf-8", "replace"), NOT_UTF8))
            continue
        if not USER_ID_RE.fullmatch(text):
            rejected.append(Rejected(number, text, NOT_A_USER_ID))
        elif int(text) > MAX_USER_ID:
            rejected.append(Rejected(number, text, TOO_LARGE))
        else:
            users.append((number, int(text)))
    return ChunkLines(users, rejected)


def plan_file(blocks: Iterable[bytes]) -> FilePlan:
    """Cut the file, read block by block, into chunks at line ends; count its data lines. Memory stays
    one block and one line."""
    chunks: list[ImportChunk] = []
    data_lines = 0
    start = offset = 0
    first_line = number = 1
    for raw in _stream_lines(blocks):
        if not _is_blank_or_header(raw[:-1] if raw.endswith(b"\r") else raw, number):
            data_lines += 1
        offset += len(raw) + 1
        number += 1
        if number - first_line >= CHUNK_LINES or offset - start >= CHUNK_BYTES:
            chunks.append(ImportChunk(len(chunks), first_line, start, offset))
            start, first_line = offset, number
    if number > first_line:
        chunks.append(ImportChunk(len(chunks), first_line, start, offset))
    return FilePlan(chunks, data_lines)


def error_lines(rejected: Iterable[Rejected]) -> Iterator[str]:
    """The errors CSV's rows (`line;value;error`), without its header."""
    for line in rejected:
        yield f"{line.line};{_cell(line.value)};{line.error}\n"


def _cell(value: str) -> str:
    """A value as a spreadsheet shows it and never runs it: cut to SHOWN_CHARACTERS, a leading = + - @
    tab or return made text with a ', and quoted (RFC 4180) where it holds ; " or a line end."""
    shown = value if len(value) <= SHOWN_CHARACTERS else value[:SHOWN_CHARACTERS] + "…"
    if shown[:1] in ("=", "+", "-", "@", "\t", "\r"):
        shown = "'" + shown
    if any(character in shown for character in ';"\n\r') or shown != shown.strip():
        shown = '"' + shown.replace('"', '""') + '"'
    return shown


def _is_blank_or_header(line: bytes, number: int) -> bool:
    if number == 1:
        line = line.removeprefix(BOM)
    return not line.strip() or (number == 1 and line == HEADER.encode())


def _lines(data: bytes, at_file_start: bool) -> list[bytes]:
    if at_file_start:
        data = data.removeprefix(BOM)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the last line's end, not a line of its own
    return lines


def _stream_lines(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """Every line of the file without its `\\n`, the BOM included (offsets count it)."""
    tail = b""
    for block in blocks:
        lines = (tail + block).split(b"\n")
        tail = lines.pop()
        yield from lines
    if tail:
        yield tail
