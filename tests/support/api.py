"""Call the real Lambda handlers with events/ files, the way API Gateway would, and read the answers."""

import importlib
import json
from dataclasses import dataclass
from typing import Any

from tests.support.events import api_event


@dataclass
class FakeContext:
    function_name: str = "segments-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:segments-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000  # the longest timeout in template.yaml


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def problem(self) -> dict[str, Any]:
        assert self.headers.get("Content-Type") == "application/problem+json", self.headers
        assert isinstance(self.body, dict)
        return self.body


def invoke(name: str, event: dict[str, Any]) -> Answer:
    """`name` is the handler module and the events/ file, e.g. api_create_segment."""
    handler = importlib.import_module(f"handlers.{name}").lambda_handler
    response = handler(event, FakeContext())
    text = response.get("body") or ""
    body = json.loads(text) if text else None
    return Answer(response["statusCode"], response.get("headers") or {}, body)


def call(name: str, **changes: Any) -> Answer:
    return invoke(name, api_event(name, **changes))


class Api:
    """The routes of the SPEC as one client would use them, each through its own handler and event."""

    def create_segment(self, slug: str, **fields: Any) -> Answer:
        return call("api_create_segment", body={"slug": slug, **fields})

    def list_segments(self, **query: str) -> Answer:
        return call("api_list_segments", query=query)

    def get_segment(self, slug: str) -> Answer:
        return call("api_get_segment", path={"slug": slug})

    def patch_segment(self, slug: str, **fields: Any) -> Answer:
        return call("api_update_segment", path={"slug": slug}, body=fields)

    def delete_segment(self, slug: str) -> Answer:
        return call("api_delete_segment", path={"slug": slug})

    def change_user(
        self, user_id: int | str, add: list[Any] | None = None, remove: list[str] | None = None
    ) -> Answer:
        body: dict[str, Any] = {}
        if add is not None:
            body["add"] = add
        if remove is not None:
            body["remove"] = remove
        return call("api_update_user_segments", path={"user_id": str(user_id)}, body=body)

    def create_import(self, slug: str, **fields: Any) -> Answer:
        return call("api_create_import", path={"slug": slug}, body=fields)

    def get_import(self, slug: str, import_id: str) -> Answer:
        return call("api_get_import", path={"slug": slug, "import_id": import_id})

    def list_imports(self, slug: str, **query: str) -> Answer:
        return call("api_list_imports", path={"slug": slug}, query=query)

    def user_segments(self, user_id: int | str, details: bool = False) -> Answer:
        query = {"details": "true"} if details else {}
        return call("api_get_user_segments", path={"user_id": str(user_id)}, query=query)

    def segments_of(self, user_id: int) -> list[str]:
        answer = self.user_segments(user_id)
        assert answer.status == 200, answer
        return list(answer.body["segments"])
