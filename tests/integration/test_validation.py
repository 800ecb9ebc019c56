"""Every bad input gets the SPEC's 4xx problem document, and a rejected request writes nothing."""

from typing import Any

import pytest

from tests.conftest import indexes_caught_up
from tests.support.api import Answer, Api, call

LONG = "A" * 101


def assert_problem(answer: Answer, status: int) -> dict[str, Any]:
    assert answer.status == status, answer
    problem = answer.problem
    assert problem["status"] == status
    assert {"type", "title", "detail"} <= set(problem)
    return problem


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"slug": ""},
        {"slug": LONG},
        {"slug": "_LEADING_UNDERSCORE"},
        {"slug": "HAS SPACE"},
        {"slug": "ÜNICODE"},
        {"slug": "LINE\n"},
        {"slug": 42},
        {"slug": "OK", "unknown": 1},
        {"slug": "OK", "description": "x" * 1001},
        {"slug": "OK", "description": None},
        {"slug": "OK", "auto_percent": 100.01},
        {"slug": "OK", "auto_percent": -1},
        {"slug": "OK", "auto_percent": 10.001},
        {"slug": "OK", "auto_percent": "10"},
        {"slug": "OK", "auto_percent": True},
        {"slug": "OK", "exclusion_group": "discounts"},
        {"slug": "OK", "exclusion_group": "bad group", "auto_percent": 10},
    ],
)
def test_create_rejects_bad_bodies_with_400(api: Api, body: dict[str, Any]) -> None:
    problem = assert_problem(call("api_create_segment", body=body), 400)
    assert problem["errors"], problem
    assert api.list_segments().body["segments"] == []


@pytest.mark.parametrize(
    "raw",
    [
        "{",
        "[]",
        '"slug"',
        "null",
        '{"slug": NaN}',
        '{"slug": "A", "auto_percent": 1' + "0" * 5000 + "}",
        "[" * 50_000,
    ],
)
def test_malformed_json_is_400(api: Api, raw: str) -> None:
    assert_problem(call("api_create_segment", raw_body=raw), 400)


def test_wrong_content_type_is_415(api: Api) -> None:
    answer = call("api_create_segment", body={"slug": "A"}, headers={"content-type": "text/plain"})
    assert_problem(answer, 415)
    assert api.list_segments().body["segments"] == []


def test_oversized_body_is_413(api: Api) -> None:
    answer = call("api_create_segment", body={"slug": "A", "description": "x" * 70_000})
    assert_problem(answer, 413)


def test_duplicate_slug_is_409_and_slugs_are_case_sensitive(api: Api) -> None:
    assert api.create_segment("AVITO_VOICE_MESSAGES").status == 201
    assert_problem(api.create_segment("AVITO_VOICE_MESSAGES"), 409)
    assert api.create_segment("avito_voice_messages").status == 201


def test_created_segment_has_the_spec_shape_and_location(api: Api) -> None:
    answer = api.create_segment("AVITO_VOICE_MESSAGES", description="Voice messages")
    assert answer.status == 201
    assert answer.headers["Location"] == "/segments/AVITO_VOICE_MESSAGES"
    body = answer.body
    assert set(body) == {
        "slug", "description", "auto_percent", "exclusion_group", "bucket_range", "members", "created_at",
        "updated_at",
    }  # fmt: skip
    assert body["description"] == "Voice messages" and body["auto_percent"] is None
    assert body["members"] == {"explicit": 0, "opted_out": 0, "as_of": body["created_at"]}
    read = api.get_segment("AVITO_VOICE_MESSAGES").body
    assert {**read, "members": None} == {**body, "members": None}
    assert read["members"]["explicit"] == 0 and read["members"]["as_of"] >= body["created_at"]


@pytest.mark.parametrize("user_id", ["0", "01000", "-1", "1e3", "9223372036854775808", "abc", " 1"])
def test_bad_user_ids_are_400(api: Api, user_id: str) -> None:
    assert_problem(api.user_segments(user_id), 400)
    assert_problem(api.change_user(user_id, add=["A"]), 400)


def test_largest_user_id_is_accepted(api: Api) -> None:
    assert api.user_segments("9223372036854775807").body == {"user_id": 9223372036854775807, "segments": []}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"add": [], "remove": []},
        {"add": ["A", "A"]},
        {"remove": ["A", "A"]},
        {"add": ["A"], "remove": ["A"]},
        {"add": [f"S{n}" for n in range(51)]},
        {"add": [f"S{n}" for n in range(30)], "remove": [f"R{n}" for n in range(21)]},
        {"add": [{"slug": "A", "ttl_seconds": 0}]},
        {"add": [{"slug": "A", "ttl_seconds": -5}]},
        {"add": [{"slug": "A", "ttl_seconds": 315_360_001}]},
        {"add": [{"slug": "A", "ttl_seconds": 1.5}]},
        {"add": [{"slug": "A", "ttl_seconds": 60.0}]},
        {"add": [{"slug": "A", "ttl_seconds": True}]},
        {"add": [{"slug": "A", "ttl_seconds": "60"}]},
        {"add": [{"slug": "A\n"}]},
        {"add": ["A"], "remove": [None]},
        {"add": [None]},
        {"add": [{"slug": "A", "ttl_seconds": 10, "expires_at": "2999-01-01T00:00:00Z"}]},
        {"add": [{"slug": "A", "expires_at": "2000-01-01T00:00:00Z"}]},
        {"add": [{"slug": "A", "expires_at": "2999-01-01T00:00:00Z"}]},
        {"add": [{"slug": "A", "expires_at": "2030-01-01 00:00:00"}]},
        {"add": [{"slug": "A", "expires_at": "2030-01-01T00:00:00+03:00"}]},
        {"add": [{"slug": "A", "expires_at": "2030-02-30T00:00:00Z"}]},
        {"add": [{"slug": "A", "colour": "red"}]},
        {"add": [{"ttl_seconds": 10}]},
        {"add": [7]},
        {"add": "A"},
        {"remove": [{"slug": "A"}]},
        {"add": ["A"], "extra": True},
    ],
)
def test_bad_user_updates_are_400_and_write_nothing(api: Api, body: dict[str, Any]) -> None:
    api.create_segment("A")
    answer = call("api_update_user_segments", path={"user_id": "1000"}, body=body)
    assert_problem(answer, 400)
    assert api.segments_of(1000) == []


def test_shape_errors_come_before_missing_segments(api: Api) -> None:
    # 400 before 404: the request names an unknown slug and also repeats one
    answer = call("api_update_user_segments", path={"user_id": "1"}, body={"add": ["NOPE", "NOPE"]})
    assert_problem(answer, 400)


def test_unknown_segment_is_404_with_missing(api: Api) -> None:
    problem = assert_problem(api.change_user(1000, add=["NOPE"]), 404)
    assert problem["missing"] == ["NOPE"]


def test_get_patch_of_unknown_segment_is_404(api: Api) -> None:
    assert_problem(api.get_segment("NOPE"), 404)
    assert_problem(api.patch_segment("NOPE", description="x"), 404)


def test_bad_slug_in_path_is_400(api: Api) -> None:
    assert_problem(api.get_segment("bad slug"), 400)
    assert_problem(api.delete_segment("_x"), 400)


@pytest.mark.parametrize(
    "query",
    [{"limit": "0"}, {"limit": "1001"}, {"limit": "ten"}, {"limit": "01"}, {"cursor": "!!"}, {"page": "2"}],
)
def test_bad_list_parameters_are_400(api: Api, query: dict[str, str]) -> None:
    assert_problem(api.list_segments(**query), 400)


def test_details_must_be_true_or_false(api: Api) -> None:
    answer = call("api_get_user_segments", path={"user_id": "1"}, query={"details": "yes"})
    assert_problem(answer, 400)


def test_patch_changes_description_and_rejects_unknown_fields(api: Api) -> None:
    api.create_segment("A", description="old")
    assert_problem(call("api_update_segment", path={"slug": "A"}, body={"slug": "B"}), 400)
    assert_problem(api.patch_segment("A", description=None), 400)
    answer = api.patch_segment("A", description="new")
    assert answer.status == 200 and answer.body["description"] == "new"
    assert answer.body["updated_at"] >= answer.body["created_at"]
    assert api.get_segment("A").body["description"] == "new"


def test_list_pages_through_every_segment_in_byte_order(api: Api) -> None:
    slugs = ["b", "A", "a", "B", "0", "Z.1", "Z-1", "Z_1"]
    for slug in slugs:
        api.create_segment(slug)
    indexes_caught_up()  # the list is an index: a new segment shows once it has caught up
    seen, cursor = [], None
    while True:
        query = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = api.list_segments(**query).body
        seen += [segment["slug"] for segment in page["segments"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(slugs, key=lambda slug: slug.encode())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"add": [{"slug": "A", "ttl_seconds": 0}]}, "add.0.ttl_seconds"),
        ({"add": ["A", {"slug": "bad slug"}]}, "add.1.slug"),
        ({"remove": ["A", "B", 3]}, "remove.2"),
        ({"add": ["A"], "colour": "red"}, "body"),
    ],
)
def test_a_bad_field_is_named_in_the_problem(api: Api, body: dict[str, Any], field: str) -> None:
    answer = call("api_update_user_segments", path={"user_id": "1000"}, body=body)
    assert [error["field"] for error in assert_problem(answer, 400)["errors"]] == [field]
