"""The TTL sweeper: deletes what expired, spares what was rewritten, and marks its stream records."""

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local.ttl import TtlMarks, TtlSweeper

TABLE = "ttl-test"
NOW = 1_800_000_000


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        yield client


def put(dynamodb: Any, key: str, ttl: dict[str, str] | None) -> None:
    item = {"pk": {"S": key}}
    if ttl is not None:
        item["ttl"] = ttl
    dynamodb.put_item(TableName=TABLE, Item=item)


def keys(dynamodb: Any) -> set[str]:
    return {item["pk"]["S"] for item in dynamodb.scan(TableName=TABLE)["Items"]}


def test_only_items_past_their_epoch_seconds_ttl_are_deleted(dynamodb: Any) -> None:
    # Given items expired, not yet expired, without ttl, with a non-number ttl, and with an ancient ttl
    put(dynamodb, "expired", {"N": str(NOW - 1)})
    put(dynamodb, "future", {"N": str(NOW + 60)})
    put(dynamodb, "permanent", None)
    put(dynamodb, "text", {"S": "yesterday"})
    put(dynamodb, "ancient", {"N": "1"})
    sweeper = TtlSweeper(dynamodb, TABLE, "ttl", ["pk"], TtlMarks())
    # When the sweeper runs
    deleted = sweeper.sweep(now=NOW)
    # Then only the expired item is gone (DynamoDB ignores ttl values over five years old)
    assert deleted == 1
    assert keys(dynamodb) == {"future", "permanent", "text", "ancient"}


def test_its_remove_record_is_marked_as_the_services(dynamodb: Any) -> None:
    marks = TtlMarks()
    put(dynamodb, "expired", {"N": str(NOW - 1)})
    TtlSweeper(dynamodb, TABLE, "ttl", ["pk"], marks).sweep(now=NOW)
    stream_arn = dynamodb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    streams = boto3.client("dynamodbstreams", region_name="us-east-1")
    shard = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(
        StreamArn=stream_arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )
    records = streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    insert, remove = records
    assert remove["eventName"] == "REMOVE" and remove["dynamodb"]["SequenceNumber"] in marks
    assert insert["dynamodb"]["SequenceNumber"] not in marks


def test_an_item_rewritten_with_a_later_ttl_survives(dynamodb: Any) -> None:
    # Given an expired item that is rewritten with a later ttl after the sweeper found it
    put(dynamodb, "renewed", {"N": str(NOW - 1)})
    sweeper = TtlSweeper(dynamodb, TABLE, "ttl", ["pk"], TtlMarks())
    found = sweeper._expired(NOW)
    put(dynamodb, "renewed", {"N": str(NOW + 3600)})
    # When the sweeper deletes what it found, Then the renewed item stays
    assert [sweeper._delete(item) for item in found] == [False]
    assert keys(dynamodb) == {"renewed"}
