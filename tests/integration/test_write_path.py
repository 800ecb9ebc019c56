"""The write path as DynamoDB behaves: existence from the table (never a lagging index), commits that
may be sent twice, no segment item in a user's transaction, and rule changes that fence their
segment instead of failing every update in flight."""

import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from dal.factory import get_store
from shared.clock import utc_now
from tests.conftest import TABLE, indexes_held, service_client
from tests.integration.test_history_and_reports import History, rows_of
from tests.support.api import Api
from tests.support.calls import counting_calls


@contextmanager
def transactions_sent() -> Iterator[list[dict[str, Any]]]:
    """The body of every TransactWriteItems the service sends."""
    sent: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        sent.append(json.loads(params["body"]))

    client = service_client()
    client.meta.events.register("before-call.dynamodb.TransactWriteItems", record, unique_id="sent")
    try:
        yield sent
    finally:
        client.meta.events.unregister("before-call.dynamodb.TransactWriteItems", unique_id="sent")


@contextmanager
def first_commit_answer_lost() -> Iterator[Counter[str]]:
    """The first TransactWriteItems commits, and its answer never reaches the service."""
    seen: Counter[str] = Counter()

    def lose(http_response: Any, **_: Any) -> None:
        seen["commits"] += 1
        if seen["commits"] == 1 and http_response.status_code < 300:
            raise ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    client = service_client()
    client.meta.events.register_last("after-call.dynamodb.TransactWriteItems", lose, unique_id="lose")
    try:
        yield seen
    finally:
        client.meta.events.unregister("after-call.dynamodb.TransactWriteItems", unique_id="lose")


# --- existence: the table decides, whatever the indexes say --------------------------------------


def test_a_segment_created_a_moment_ago_can_be_given_at_once(api: Api) -> None:
    # Given a segment the lagging catalog index does not show yet
    with indexes_held():
        assert api.create_segment("FRESH").status == 201
        assert "FRESH" not in [s["slug"] for s in api.list_segments().body["segments"]]
        # When a user is given it at once, Then it exists: the table said so
        answer = api.change_user(1, add=["FRESH"])
    assert answer.status == 200 and answer.body["added"] == ["FRESH"], answer


def test_a_rule_change_a_moment_ago_never_makes_an_update_busy(api: Api) -> None:
    api.create_segment("RAMP", auto_percent=10)
    for percent in (20, 30, 40):
        assert api.patch_segment("RAMP", auto_percent=percent).status == 200
        assert api.change_user(2, add=["RAMP"]).status == 200


def test_an_unknown_slug_is_one_read_of_the_table_not_a_reload(api: Api) -> None:
    api.create_segment("KNOWN")
    with counting_calls() as calls:
        answer = api.change_user(3, add=["KNOWN", "UNKNOWN"])
    assert answer.status == 404 and answer.problem["missing"] == ["UNKNOWN"]
    assert calls == Counter({"BatchGetItem": 1})


# --- one user's items, and nothing else, in a user's transaction --------------------------------


def test_a_user_update_writes_and_checks_only_the_users_own_items(api: Api) -> None:
    api.create_segment("POPULAR")
    api.create_segment("OTHER", auto_percent=50)
    with transactions_sent() as sent:
        assert api.change_user(4, add=["POPULAR"], remove=["OTHER"]).status == 200
    (transaction,) = sent
    keys = [
        next(iter(action.values()))["Key" if "ConditionCheck" in action else "Item"]
        for action in transaction["TransactItems"]
    ]
    assert {key["pk"]["S"] for key in keys} == {"USER#4"}
    assert transaction["ClientRequestToken"]


def test_a_description_change_fails_no_update_in_flight(api: Api) -> None:
    # Given an update whose transaction is held back until a PATCH of the description committed
    api.create_segment("DESCRIBED")
    client = service_client()
    patched = threading.Event()

    def patch_first(**_: Any) -> None:
        if not patched.is_set():
            patched.set()  # first: the PATCH's own transaction passes this hook too
            assert Api().patch_segment("DESCRIBED", description="changed meanwhile").status == 200

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", patch_first, unique_id="patch")
    try:
        with transactions_sent() as sent:
            answer = api.change_user(5, add=["DESCRIBED"])
    finally:
        client.meta.events.unregister("before-call.dynamodb.TransactWriteItems", unique_id="patch")
    # Then it committed on its first attempt
    assert answer.status == 200 and answer.body["added"] == ["DESCRIBED"]
    users = [body for body in sent if "USER#5" in json.dumps(body)]
    assert len(users) == 1


def test_the_worst_request_fits_a_transaction_with_room_to_spare(api: Api) -> None:
    # 50 slugs of 100 characters, every add with an expiry: DynamoDB allows 100 actions and 4 MB
    slugs = [f"S{index:02d}" + "x" * 97 for index in range(50)]
    for slug in slugs:
        assert api.create_segment(slug, description="d" * 1000).status == 201
    adds = [{"slug": slug, "ttl_seconds": 315_360_000} for slug in slugs[:25]]
    api.change_user(9_223_372_036_854_775_807, add=slugs[25:])  # removes below change stored items
    with transactions_sent() as sent:
        answer = api.change_user(9_223_372_036_854_775_807, add=adds, remove=slugs[25:])
    assert answer.status == 200, answer
    (transaction,) = sent
    assert len(transaction["TransactItems"]) == 50
    assert len(json.dumps(transaction).encode()) < 4 * 1024 * 1024 / 20


# --- commits sent twice ------------------------------------------------------------------------


def test_a_commit_whose_answer_was_lost_answers_added_with_one_history_row(api: Api) -> None:
    history = History()
    api.create_segment("ONCE")
    with first_commit_answer_lost() as seen:
        answer = api.change_user(6, add=["ONCE"])
    assert seen["commits"] == 2  # sent again, with the same token
    assert answer.status == 200 and answer.body["added"] == ["ONCE"], answer
    _, text = history.report(user_id=6)
    assert rows_of(text) == [("6", "ONCE", "add", "manual")]


def test_moto_still_applies_a_repeated_client_request_token(aws: None) -> None:
    """When this fails, moto honours ClientRequestToken: drop tests/support/token_idempotency.py."""
    client = boto3.client("dynamodb")  # not the service's: no bridge on it
    put = {
        "Put": {
            "TableName": TABLE,
            "Item": {"pk": {"S": "TOKEN"}, "sk": {"S": "TEST"}},
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }
    client.transact_write_items(TransactItems=[put], ClientRequestToken="same-token")
    with pytest.raises(ClientError, match="TransactionCanceled"):
        client.transact_write_items(TransactItems=[put], ClientRequestToken="same-token")


# --- fences ------------------------------------------------------------------------------------


def test_a_user_update_waits_for_a_fenced_segment_then_sees_its_new_rule(api: Api) -> None:
    # Given a segment fenced by a rule change in progress, released a moment later
    api.create_segment("FENCED", auto_percent=100)
    store = get_store()
    found = store.find_segment("FENCED")
    assert found is not None
    fenced = store.fence_segment(found[0], "token", utc_now())
    timer = threading.Timer(0.05, store.release_fence, (fenced, "token"))
    timer.start()
    # When a user is removed meanwhile, Then the update waited and committed
    answer = api.change_user(7, remove=["FENCED"])
    timer.join()
    assert answer.status == 200 and answer.body["removed"] == ["FENCED"], answer


def test_a_fence_left_by_a_writer_that_died_is_ignored_after_its_timeout(api: Api) -> None:
    from logic.segments import FENCE_TIMEOUT

    api.create_segment("ABANDONED")
    store = get_store()
    found = store.find_segment("ABANDONED")
    assert found is not None
    store.fence_segment(found[0], "dead-writer", utc_now() - FENCE_TIMEOUT - timedelta(seconds=1))
    assert api.change_user(8, add=["ABANDONED"]).status == 200
    assert api.patch_segment("ABANDONED", auto_percent=5).status == 200
