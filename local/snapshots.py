"""Keeps local data across restarts: the table's items and the buckets' objects, in the data directory.

moto keeps everything in memory and has no snapshot of its own (its recorder replays requests, which
would replay stream side effects too), so the runtime saves what a user would miss.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("local.snapshots")

SNAPSHOT_FILE = "snapshot.json"


def save(directory: Path, dynamodb: Any, table_name: str, s3: Any, buckets: list[str]) -> int:
    """Writes the snapshot atomically; returns the number of items saved."""
    items = _scan(dynamodb, table_name)
    objects = {bucket: _objects(s3, bucket) for bucket in buckets}
    document = {"version": 1, "table": items, "objects": objects}
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f"{SNAPSHOT_FILE}.tmp"
    partial.write_text(json.dumps(document), encoding="utf-8")
    os.replace(partial, directory / SNAPSHOT_FILE)  # a crash mid-write keeps the previous snapshot
    return len(items)


def restore(directory: Path, dynamodb: Any, table_name: str, s3: Any, buckets: list[str]) -> int:
    path = directory / SNAPSHOT_FILE
    if not path.exists():
        return 0
    document = json.loads(path.read_text(encoding="utf-8"))
    items: list[dict[str, Any]] = document.get("table", [])
    for start in range(0, len(items), 25):
        requests = [{"PutRequest": {"Item": _decode_item(item)}} for item in items[start : start + 25]]
        pending: dict[str, Any] = {table_name: requests}
        while pending:
            pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
    for bucket, objects in document.get("objects", {}).items():
        if bucket not in buckets:
            continue
        for key, entry in objects.items():
            s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=base64.b64decode(entry["body"]),
                ContentType=entry.get("content_type", "binary/octet-stream"),
            )
    return len(items)


def _scan(dynamodb: Any, table_name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    arguments: dict[str, Any] = {"TableName": table_name}
    while True:
        page = dynamodb.scan(**arguments)
        items.extend(_encode_item(item) for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _objects(s3: Any, bucket: str) -> dict[str, dict[str, str]]:
    saved: dict[str, dict[str, str]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for entry in page.get("Contents", []):
            found = s3.get_object(Bucket=bucket, Key=entry["Key"])
            saved[entry["Key"]] = {
                "body": base64.b64encode(found["Body"].read()).decode("ascii"),
                "content_type": found.get("ContentType", "binary/octet-stream"),
            }
    return saved


def _encode_item(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _convert(value, encode=True) for name, value in item.items()}


def _decode_item(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _convert(value, encode=False) for name, value in item.items()}


def _convert(value: dict[str, Any], encode: bool) -> dict[str, Any]:
    """Binary attributes are bytes in boto3 and base64 text in the JSON file."""
    ((kind, inner),) = value.items()

    def binary(data: Any) -> Any:
        return base64.b64encode(data).decode("ascii") if encode else base64.b64decode(data)

    if kind == "B":
        return {"B": binary(inner)}
    if kind == "BS":
        return {"BS": [binary(item) for item in inner]}
    if kind == "M":
        return {"M": {key: _convert(item, encode) for key, item in inner.items()}}
    if kind == "L":
        return {"L": [_convert(item, encode) for item in inner]}
    return {kind: inner}
