"""The events/ files that `sam local invoke -e` takes, loaded and varied for tests."""

import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))


def api_event(
    name: str,
    *,
    path: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    body: Any = ...,
    raw_body: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The named events/ file with its path parameters, query or body replaced, kept self-consistent."""
    event = copy.deepcopy(load_event(name))
    if path is not None:
        event["pathParameters"] = {**event.get("pathParameters", {}), **path}
        raw_path = event["routeKey"].split(" ", 1)[1]
        for key, value in event["pathParameters"].items():
            raw_path = raw_path.replace("{" + key + "}", value)
        event["rawPath"] = raw_path
        event["requestContext"]["http"]["path"] = raw_path
    if query is not None:
        event["queryStringParameters"] = query or None
        event["rawQueryString"] = urlencode(query)
    if body is not ...:
        event["body"] = json.dumps(body)
        event["headers"]["content-type"] = "application/json"
    if raw_body is not None:
        event["body"] = raw_body
    if headers is not None:
        event["headers"].update(headers)
    return event


def history_records() -> list[dict[str, Any]]:
    """The membership records of events/stream_table.json: the SPEC's example add and remove."""
    records = load_event("stream_table")["Records"]
    return [record for record in records if record["dynamodb"]["Keys"]["pk"]["S"].startswith("USER#")]
