"""Hostile input: each gets the SPEC's 4xx problem (never 500) and writes nothing; no formula reaches a CSV
cell; no presigned signature or credential reaches a log line."""

import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import BUCKET, TABLE
from tests.support.api import Answer, Api, call, invoke
from tests.support.events import api_event

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "|", "%")


def stored() -> tuple[list[str], list[str]]:
    """Every item of the table and every object of the bucket, to prove a request wrote nothing."""
    items = boto3.client("dynamodb").scan(TableName=TABLE, ConsistentRead=True)["Items"]
    objects = boto3.client("s3").list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return sorted(json.dumps(item, sort_keys=True) for item in items), sorted(o["Key"] for o in objects)


@pytest.fixture(scope="module")
def world() -> Iterator[Api]:
    """One moto AWS for the whole module (hundreds of cases): two segments and a member."""
    from moto import mock_aws

    from dal import factory
    from tests.support.atomic_moto import make_dynamodb_requests_atomic
    from tests.support.background import create_queues
    from tests.support.table import create_table

    make_dynamodb_requests_atomic()
    with mock_aws():
        create_table(boto3.client("dynamodb"), TABLE)
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        create_queues(boto3.client("sqs"), TABLE)
        factory.get_catalog.cache_clear()
        factory.get_job_queue.cache_clear()
        api = Api()
        assert api.create_segment("A").status == 201
        assert api.create_segment("B", auto_percent=50).status == 201
        assert api.change_user(1000, add=["A"]).status == 200
        yield api
        factory.get_catalog.cache_clear()


@pytest.fixture
def ready(world: Api) -> Iterator[Api]:
    """The test's hostile requests must leave every item and object as it was."""
    before = stored()
    yield world
    assert stored() == before


def rejected(answer: Answer, *statuses: int) -> dict[str, Any]:
    assert answer.status in (statuses or (400,)), answer
    problem = answer.problem
    assert problem["status"] == answer.status and {"type", "title", "detail"} <= set(problem)
    return problem


def raw(name: str, text: str, **path: str) -> Answer:
    return call(name, path=path or None, raw_body=text, headers={"content-type": "application/json"})


BODY_ROUTES = [
    ("api_create_segment", {}),
    ("api_update_segment", {"slug": "A"}),
    ("api_update_user_segments", {"user_id": "1000"}),
]


# --- sizes and shapes ----------------------------------------------------------------------------


@pytest.mark.parametrize(("route", "path"), BODY_ROUTES)
@pytest.mark.parametrize("size", [64 * 1024 + 1, 1024 * 1024, 6 * 1024 * 1024])
def test_oversized_bodies_are_413(ready: Api, route: str, path: dict[str, str], size: int) -> None:
    padding = "x" * size
    rejected(raw(route, json.dumps({"slug": "C", "description": padding}), **path), 413)


def test_multibyte_body_is_measured_in_bytes_not_characters(ready: Api) -> None:
    body = json.dumps({"slug": "C", "description": "é" * 33_000}, ensure_ascii=False)
    assert len(body) < 64 * 1024 < len(body.encode())
    rejected(raw("api_create_segment", body), 413)


@pytest.mark.parametrize(("route", "path"), BODY_ROUTES)
@pytest.mark.parametrize(
    "text",
    [
        "[" * 30_000 + "]" * 30_000,
        '{"slug": "C", "description": ' + "[" * 30_000 + "]" * 30_000 + "}",
        '{"add": ' + '{"a": ' * 10_000 + "1" + "}" * 10_000 + "}",
        '{"slug": "C", "description": ' + "[" * 900 + "]" * 900 + "}",  # deep, but under the parser's limit
        '{"add": [' + "[" * 500 + "]" * 500 + "]}",
    ],
)
def test_deeply_nested_json_is_400(ready: Api, route: str, path: dict[str, str], text: str) -> None:
    rejected(raw(route, text, **path), 400, 413)  # 413 when the nesting also passes 64 KiB


@pytest.mark.parametrize(
    "text",
    [
        '{"slug": "C", "auto_percent": 1e400}',
        '{"slug": "C", "auto_percent": -1e400}',
        '{"slug": "C", "auto_percent": ' + "9" * 5000 + "}",  # beyond Python's int-parsing digit limit
        '{"slug": "C", "auto_percent": ' + "9" * 4000 + "}",
        '{"slug": "C", "auto_percent": NaN}',
        '{"slug": "C", "auto_percent": Infinity}',
        '{"slug": "C", "auto_percent": -Infinity}',
        '{"slug": "C", "auto_percent": 1' + "0" * 400 + "}",
    ],
)
def test_huge_tiny_and_non_finite_numbers_are_400_on_create(ready: Api, text: str) -> None:
    rejected(raw("api_create_segment", text))


@pytest.mark.parametrize(
    "number", ["1e400", "NaN", "Infinity", "9" * 5000, "9" * 4000, "2" + "0" * 400, "1.5", "1e3"]
)
def test_huge_and_non_finite_ttls_are_400(ready: Api, number: str) -> None:
    text = '{"add": [{"slug": "A", "ttl_seconds": ' + number + "}]}"
    rejected(raw("api_update_user_segments", text, user_id="7"))


@pytest.mark.parametrize("number", ["1e400", "-Infinity", "NaN", "9" * 5000, "9" * 4000, "1e3", "100.001"])
def test_huge_and_non_finite_percents_are_400_on_patch(ready: Api, number: str) -> None:
    rejected(raw("api_update_segment", '{"auto_percent": ' + number + "}", slug="B"))


@pytest.mark.parametrize("number", ["1e-400", "0." + "0" * 4000 + "1", "-0.0"])
def test_numbers_that_underflow_are_read_as_the_double_json_gives(world: Api, number: str) -> None:
    """JSON numbers are doubles: 1e-400 is 0.0 to every parser, so it creates a 0 % segment, never a 500."""
    answer = raw("api_create_segment", '{"slug": "UNDERFLOW", "auto_percent": ' + number + "}")
    assert answer.status == 201 and answer.body["auto_percent"] == 0, answer
    assert world.delete_segment("UNDERFLOW").status == 204


@pytest.mark.parametrize("encoded", ["!!!not-base64", base64.b64encode(b'{"slug": "\xff\xfe"}').decode()])
@pytest.mark.parametrize(("route", "path"), BODY_ROUTES)
def test_base64_bodies_that_are_not_utf8_json_are_400(
    ready: Api, route: str, path: dict[str, str], encoded: str
) -> None:
    # API Gateway base64-encodes bodies it takes for binary (e.g. Content-Encoding: gzip).
    event = api_event(
        route, path=path or None, raw_body=encoded, headers={"content-type": "application/json"}
    )
    event["isBase64Encoded"] = True
    rejected(invoke(route, event))


# --- unicode, control characters and formulas in slugs --------------------------------------------

HOSTILE_SLUGS = [
    "АВИТО",  # Cyrillic look-alikes
    "A\u200b",  # zero-width space
    "\u200bA",
    "A\u200d\u200c",  # zero-width joiner / non-joiner
    "\u202eA",  # right-to-left override
    "A\u2066B",  # left-to-right isolate
    "\ufeffA",  # byte-order mark
    "\uff21",  # fullwidth A
    "\uff11",  # fullwidth digit
    "A\x00",
    "A\n",
    "A\r\n",
    "\tA",
    "A\x1b[31m",
    "A\x7f",
    "é",
    "A/B",
    "../A",
    "A%2FB",
    "A B",
    "A'; DROP TABLE segments; --",
    'A" OR "1"="1',
    "SEGMENT#A",
    "A#META",
    '=HYPERLINK("http://x")',
    "+1",
    "-1",
    "@SUM(1)",
    "|cmd",
    "%0A",
    "_A",
    ".A",
    "A" * 101,
    "",
]


@pytest.mark.parametrize("slug", HOSTILE_SLUGS)
def test_hostile_slugs_in_bodies_are_400(ready: Api, slug: str) -> None:
    rejected(ready.create_segment(slug))
    rejected(ready.create_segment("C", exclusion_group=slug, auto_percent=10))
    rejected(ready.change_user(1000, add=[slug]))
    rejected(ready.change_user(1000, add=[{"slug": slug, "ttl_seconds": 60}]))
    rejected(ready.change_user(1000, remove=[slug]))


@pytest.mark.parametrize("slug", [s for s in HOSTILE_SLUGS if s])
def test_hostile_slugs_in_paths_are_4xx(ready: Api, slug: str) -> None:
    # A slash or a control character cannot match the route at all (404); anything else is 400.
    rejected(ready.get_segment(slug), 400, 404)
    rejected(ready.patch_segment(slug, description="x"), 400, 404)
    rejected(ready.delete_segment(slug), 400, 404)


@pytest.mark.parametrize(
    "user_id",
    [
        "1/../2",
        "../1000",
        "1000/",
        "1%2F..%2F2",
        "\uff11\uff10\uff10\uff10",
        "1000\n",
        " 1000",
        "1e3",
        "0x10",
        "-1",
        "1000#",
        "9" * 5000,
    ],
)
def test_hostile_user_ids_in_paths_are_4xx(ready: Api, user_id: str) -> None:
    rejected(ready.user_segments(user_id), 400, 404)
    rejected(ready.change_user(user_id, add=["A"]), 400, 404)


@given(st.text(max_size=12))
def test_no_accepted_slug_can_start_a_csv_formula(text: str) -> None:
    """Anything the slug rule (body or path) accepts starts with an ASCII letter or digit."""
    from models.api import CreateSegmentRequest
    from models.errors import InvalidRequest
    from models.formats import SLUG_RE

    try:
        CreateSegmentRequest.parse({"slug": text})
    except InvalidRequest:
        accepted_in_body = False
    else:
        accepted_in_body = True
    assert accepted_in_body == bool(SLUG_RE.fullmatch(text))
    if accepted_in_body:
        assert text[0].isascii() and text[0].isalnum() and not text.startswith(FORMULA_STARTS)
        assert all(c.isascii() and (c.isalnum() or c in "_.-") for c in text)


def test_no_csv_cell_of_a_report_can_start_a_formula(world: Api) -> None:
    """Every stored value a report prints: user ids, slugs, fixed words and timestamps."""
    from tests.integration.test_history_and_reports import History

    api = world
    api.create_segment("9-lives.x_y")  # digits, dots, dashes and underscores inside are allowed
    api.change_user(1, add=["9-lives.x_y", "A"])
    api.change_user(1, remove=["A"])
    _, text = History().report(user_id=1)
    lines = text.splitlines()
    assert len(lines) >= 4, text  # three manual rows, and an auto row if user 1 is in B's bucket
    for line in lines[1:]:
        for cell in line.split(";"):
            assert cell and cell[0].isascii() and cell[0].isalnum(), (line, cell)
            assert not any(c in cell for c in ';"\r\n\t'), cell


# --- query strings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "query"),
    [
        ("api_list_segments", {"limit": "1; DROP TABLE segments"}),
        ("api_list_segments", {"limit": "1 OR 1=1"}),
        ("api_list_segments", {"limit": "\uff11\uff10"}),
        ("api_list_segments", {"limit": "1e3"}),
        ("api_list_segments", {"limit": "9" * 5000}),
        ("api_list_segments", {"cursor": "' OR '1'='1"}),
        ("api_list_segments", {"cursor": base64.urlsafe_b64encode(b"SEGMENT#A").decode()}),
        ("api_list_segments", {"cursor": base64.urlsafe_b64encode(b'{"pk": {"S": "USER#1"}}').decode()}),
        ("api_list_segments", {"cursor": "A\x00"}),
        ("api_list_segments", {"cursor": "QQ==\u202e"}),
        ("api_list_segments", {"$where": "1"}),
        ("api_list_segments", {"limit": "10", "ExclusiveStartKey": "x"}),
        ("api_get_user_segments", {"details": "true' --"}),
        ("api_get_user_segments", {"details": "TRUE"}),
        ("api_get_user_segments", {"details": "1"}),
        ("api_get_user_segments", {"consistent": "true"}),
        ("api_history_report", {"period": "2023-08' OR '1'='1"}),
        ("api_history_report", {"period": "2023-08\n"}),
        ("api_history_report", {"period": "\uff12\uff10\uff12\uff13-\uff10\uff18"}),
        ("api_history_report", {"period": "2023-08", "user_id": "1 OR 1=1"}),
        ("api_history_report", {"period": "2023-08", "user_id": "1000\u200b"}),
    ],
)
def test_injection_attempts_in_query_strings_are_400(ready: Api, route: str, query: dict[str, str]) -> None:
    path = {"user_id": "1000"} if route == "api_get_user_segments" else None
    rejected(call(route, path=path, query=query))


@pytest.mark.parametrize(
    "query",
    [
        {"period": "../../x"},
        {"period": "../../reports/monthly/2023-08"},
        {"period": "2023-08/../../x"},
        {"period": "2023-08%2F..%2F..%2Fx"},
        {"period": "2023-08\x00.csv"},
        {"period": "..%2F..%2Fx"},
        {"period": "/etc/passwd"},
        {"period": "2023-08", "user_id": "1/../2"},
        {"period": "2023-08", "user_id": "../monthly"},
        {"period": "2023-08", "user_id": "1%2F..%2F2"},
        {"period": "2023-08", "user_id": "1\\..\\2"},
        {"period": "2023-08", "user_id": ""},
        {"period": "2023-08", "user_id": "9223372036854775808"},
    ],
)
def test_path_traversal_in_report_parameters_is_400_and_writes_no_object(
    ready: Api, query: dict[str, str]
) -> None:
    rejected(call("api_history_report", query=query))


# --- secrets never reach logs ---------------------------------------------------------------------

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY-SECRETVALUE"
ACCESS_KEY = "AKIAHOSTILETESTKEY01"
SESSION_TOKEN = "FwoGZXIvYXdzEHostileSessionToken"


class Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record) + " " + json.dumps(record.__dict__, default=str))


def test_no_presigned_signature_or_credential_reaches_a_log_line(
    world: Api,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import botocore.session

    from dal import factory, report_storage
    from shared.observability import logger

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    monkeypatch.setenv("POWERTOOLS_LOGGER_LOG_EVENT", "true")
    # a new session and S3 client, signing with the credentials above
    make_client = report_storage.s3_client
    monkeypatch.setattr(report_storage, "s3_client", lambda: make_client(botocore.session.get_session()))
    factory.get_report_storage.cache_clear()
    collected = Collected()
    collected.setFormatter(logger.registered_formatter)
    service_logger = logging.getLogger(logger.service)
    service_logger.addHandler(collected)
    logger.setLevel("DEBUG")
    caplog.set_level(logging.INFO)  # the deployed level of every other logger (botocore's included)
    try:
        answer = call("api_history_report", query={"period": "2023-08", "user_id": "1000"})
        broken = call("api_history_report", query={"period": "2023-08", "user_id": "0"})
    finally:
        service_logger.removeHandler(collected)
        logger.setLevel("INFO")
        factory.get_report_storage.cache_clear()
    assert answer.status == 200 and broken.status == 400
    assert "X-Amz-Signature=" in answer.body["url"] and ACCESS_KEY in answer.body["url"]
    signature = answer.body["url"].split("X-Amz-Signature=")[1].split("&")[0]
    out = capsys.readouterr()
    logged = "\n".join([*collected.lines, caplog.text, out.out, out.err])
    for secret in (SECRET, signature, ACCESS_KEY, SESSION_TOKEN, "X-Amz-Signature", "X-Amz-Credential"):
        assert secret not in logged, secret


def test_report_links_last_at_most_15_minutes(world: Api) -> None:
    from urllib.parse import parse_qs, urlparse

    answer = call("api_history_report", query={"period": "2023-08"})
    assert answer.status == 200
    assert int(parse_qs(urlparse(answer.body["url"]).query)["X-Amz-Expires"][0]) <= 900
