"""DynamoDB's ClientRequestToken, which moto lacks: a TransactWriteItems sent again with the token of
one that committed (within 10 minutes) is answered as committed and not applied twice; moto applies
it again. tests/integration/test_idempotent_commits.py has the test that fails once moto stops
needing this bridge.

Installed first on the service's client (botocore's public event hooks), so that it records a
commit before any fault injected after it loses the answer.
"""

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Http:
    status_code: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes = b"{}"


class CommittedTokens:
    def __init__(self) -> None:
        self.committed: set[str] = set()
        self.answered_again = 0

    def install(self, client: Any) -> "CommittedTokens":
        events = client.meta.events
        events.register_first("before-call.dynamodb.TransactWriteItems", self._before, unique_id="tokens-b")
        events.register_first("after-call.dynamodb.TransactWriteItems", self._after, unique_id="tokens-a")
        return self

    def uninstall(self, client: Any) -> None:
        client.meta.events.unregister("before-call.dynamodb.TransactWriteItems", unique_id="tokens-b")
        client.meta.events.unregister("after-call.dynamodb.TransactWriteItems", unique_id="tokens-a")

    def _before(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> Any:
        token = json.loads(params.get("body") or b"{}").get("ClientRequestToken")
        if token is None:
            return None
        if token in self.committed:
            self.answered_again += 1
            return _Http(), {}
        context["client_request_token"] = token
        return None

    def _after(self, http_response: Any, context: dict[str, Any], **_: Any) -> None:
        token = context.pop("client_request_token", None)
        if token is not None and http_response.status_code < 300:
            self.committed.add(token)
