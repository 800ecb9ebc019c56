"""Turns DynamoDB Streams API records into the records Lambda puts in a stream event."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from local.template import REGION

# What AWS writes into the stream records of items its TTL process deleted.
TTL_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}


def lambda_record(record: dict[str, Any], stream_arn: str, deleted_by_ttl: bool) -> dict[str, Any]:
    image = dict(record["dynamodb"])
    created = image.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        # Lambda events carry whole epoch seconds, not the API's timestamp type.
        image["ApproximateCreationDateTime"] = int(created.timestamp())
    for name in ("Keys", "NewImage", "OldImage"):
        if name in image:
            image[name] = {key: _json_value(value) for key, value in image[name].items()}
    converted: dict[str, Any] = {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion", REGION),
        "dynamodb": image,
        "eventSourceARN": stream_arn,
    }
    if deleted_by_ttl:
        converted["userIdentity"] = dict(TTL_IDENTITY)
    elif "userIdentity" in record:
        converted["userIdentity"] = record["userIdentity"]
    return converted


def _json_value(value: dict[str, Any]) -> dict[str, Any]:
    """boto3 decodes binary attributes to bytes; Lambda events carry them base64-encoded."""
    ((kind, inner),) = value.items()
    if kind == "B":
        return {"B": _b64(inner)}
    if kind == "BS":
        return {"BS": [_b64(item) for item in inner]}
    if kind == "M":
        return {"M": {key: _json_value(item) for key, item in inner.items()}}
    if kind == "L":
        return {"L": [_json_value(item) for item in inner]}
    return {kind: inner}


def _b64(data: bytes | str) -> str:
    return data if isinstance(data, str) else base64.b64encode(data).decode("ascii")
