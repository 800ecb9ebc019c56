"""An import's file: its lines, its chunks and its errors CSV (logic/import_lines.py)."""

import random

import pytest

from logic import import_lines
from logic.import_lines import (
    NOT_A_USER_ID,
    NOT_UTF8,
    TOO_LARGE,
    Rejected,
    error_lines,
    plan_file,
    read_chunk,
)


def blocks(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)] or [b""]


def test_good_bad_blank_and_header_lines_are_told_apart() -> None:
    data = (
        "\ufeffuser_id\r\n1000\r\n\r\n   \n01\n-5\n1e3\n9223372036854775807\n9223372036854775808\n7".encode()
    )
    chunk = read_chunk(data, first_line=1)
    assert chunk.users == [(2, 1000), (8, 9223372036854775807), (10, 7)]
    assert chunk.rejected == [
        Rejected(5, "01", NOT_A_USER_ID),
        Rejected(6, "-5", NOT_A_USER_ID),
        Rejected(7, "1e3", NOT_A_USER_ID),
        Rejected(9, "9223372036854775808", TOO_LARGE),
    ]


def test_the_header_counts_only_as_the_first_line() -> None:
    assert read_chunk(b"1\nuser_id\n", first_line=1).rejected == [Rejected(2, "user_id", NOT_A_USER_ID)]
    assert read_chunk(b"user_id\n", first_line=7).rejected == [Rejected(7, "user_id", NOT_A_USER_ID)]


def test_a_line_that_is_not_utf8_is_rejected_alone() -> None:
    chunk = read_chunk(b"1\n\xff\xfe2\n3\n", first_line=1)
    assert chunk.users == [(1, 1), (3, 3)]
    assert [(line.line, line.error) for line in chunk.rejected] == [(2, NOT_UTF8)]


@pytest.mark.parametrize("block_size", [1, 3, 7, 64, 1 << 20])
def test_chunks_cover_every_line_once_at_line_ends_whatever_the_blocks(
    block_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(import_lines, "CHUNK_LINES", 5)
    monkeypatch.setattr(import_lines, "CHUNK_BYTES", 40)
    rng = random.Random(block_size)
    lines = ["user_id"] + [rng.choice([str(rng.randrange(1, 10**12)), "", "bad", " "]) for _ in range(200)]
    data = ("\ufeff" + "\r\n".join(lines)).encode()
    plan = plan_file(blocks(data, block_size))
    assert plan.chunks[0].start == 0 and plan.chunks[-1].end >= len(data)
    for before, after in zip(plan.chunks, plan.chunks[1:], strict=False):
        assert before.end == after.start and data[before.end - 1 : before.end] == b"\n"
        assert after.number == before.number + 1
    seen_users, seen_rejected = [], []
    for chunk in plan.chunks:
        assert chunk.end - chunk.start <= 40 + 14  # at most about CHUNK_BYTES, plus the line it ends
        read = read_chunk(data[chunk.start : chunk.end], chunk.first_line)
        seen_users += read.users
        seen_rejected += read.rejected
    whole = read_chunk(data, first_line=1)
    assert seen_users == whole.users and seen_rejected == whole.rejected
    assert plan.lines == len(whole.users) + len(whole.rejected)


def test_an_empty_file_has_no_chunk_and_no_line() -> None:
    assert plan_file([b""]) == import_lines.FilePlan([], 0)
    assert plan_file([b"\n\n"]).lines == 0


def test_error_rows_quote_what_needs_it_and_defuse_formulas() -> None:
    rows = list(
        error_lines(
            [
                Rejected(3, "=HYPERLINK(1)", "e"),
                Rejected(4, "a;b", "e"),
                Rejected(5, 'x"y', "e"),
                Rejected(6, " 7", "e"),
                Rejected(7, "z" * 100, "e"),
            ]
        )
    )
    assert rows == [
        "3;'=HYPERLINK(1);e\n",
        '4;"a;b";e\n',
        '5;"x""y";e\n',
        '6;" 7";e\n',
        f"7;{'z' * 64}…;e\n",
    ]
