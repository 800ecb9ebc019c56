"""The runtime's own endpoints under /_local/: health, and invoking any function by name.

POST /_local/invoke/<FunctionName>   body: the event (empty: the function's scheduled event)
GET  /_local/health
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from local.lambda_host import FunctionError, LambdaHost
from local.schedules import event_for
from local.template import Stack


class Admin:
    def __init__(self, stack: Stack, host: LambdaHost) -> None:
        self.stack = stack
        self.host = host

    def __call__(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        if method == "GET" and path == "health":
            return 200, {"status": "ok"}
        if method == "POST" and path.startswith("invoke/"):
            return self._invoke(path.removeprefix("invoke/"), body)
        return 404, {"message": "Not Found"}

    def _invoke(self, name: str, body: bytes) -> tuple[int, Any]:
        try:
            function = self.stack.function(name)
        except KeyError:
            names = sorted(function.name for function in self.stack.functions)
            return 404, {"message": f"no function {name!r}", "functions": names}
        if body.strip():
            try:
                event = json.loads(body)
            except ValueError as error:
                return 400, {"message": f"the event is not JSON: {error}"}
        elif function.schedules:
            event = event_for(function, function.schedules[0], datetime.now(UTC))
        else:
            return 400, {"message": f"{name} has no schedule: send the event as the request body"}
        try:
            result = self.host.invoke(name, event)
        except FunctionError as error:
            return 200, {"FunctionName": name, "FunctionError": "Unhandled", "errorMessage": str(error)}
        return 200, {"FunctionName": name, "StatusCode": 200, "Payload": result}
