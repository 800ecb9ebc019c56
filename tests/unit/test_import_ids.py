"""Import ids (logic.imports.new_import_id): ULIDs that sort in creation order."""

from datetime import UTC, datetime, timedelta

from logic.imports import new_import_id
from models.formats import IMPORT_ID_RE

T = datetime(2024, 9, 1, 12, 0, tzinfo=UTC)


def test_an_import_id_is_a_ulid_of_its_creation_time() -> None:
    import_id = new_import_id(T, entropy=lambda size: b"\x00" * size)
    assert IMPORT_ID_RE.fullmatch(import_id) and import_id.startswith("01J6")
    assert import_id.endswith("0" * 16)  # the 80 random bits, here all zero


def test_later_ids_sort_after_earlier_ones_whatever_their_random_bits() -> None:
    earlier = new_import_id(T, entropy=lambda size: b"\xff" * size)
    later = new_import_id(T + timedelta(milliseconds=1), entropy=lambda size: b"\x00" * size)
    assert earlier < later


def test_two_ids_of_one_moment_differ() -> None:
    assert new_import_id(T) != new_import_id(T)
