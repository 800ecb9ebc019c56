"""Translation between HTTP and API Gateway HTTP API payload format 2.0, as API Gateway does it."""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from local.template import ACCOUNT_ID, HttpRoute

API_ID = "local"
NOT_FOUND = (404, {"message": "Not Found"})
INTERNAL_ERROR = (500, {"message": "Internal Server Error"})

# API Gateway passes these media types to Lambda as text; every other body is base64-encoded.
_TEXT_TYPES = re.compile(
    r"^(text/.*|application/(json|xml|javascript|ecmascript)|application/[^;]*\+(json|xml))$", re.I
)


@dataclass(frozen=True)
class Route:
    function: str
    route: HttpRoute

    @property
    def key(self) -> str:
        return "$default" if self.route.path == "$default" else f"{self.route.method} {self.route.path}"


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # path and query exactly as received
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"


@dataclass(frozen=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class RouteTable:
    """Chooses the route API Gateway would: the most specific path, then the exact method over ANY."""

    def __init__(self, routes: list[Route]) -> None:
        self._routes = sorted(routes, key=_specificity, reverse=True)

    def match(self, method: str, raw_path: str) -> tuple[Route, dict[str, str]] | None:
        segments = raw_path.split("/")[1:]
        for route in self._routes:
            if route.route.method not in (method, "ANY"):
                continue
            parameters = _match_path(route.route.path, segments)
            if parameters is not None:
                return route, parameters
        return None


def _specificity(route: Route) -> tuple[int, int, int, int]:
    parts = route.route.path.split("/")[1:]
    literal = sum(1 for part in parts if not part.startswith("{"))
    greedy = any(part.endswith("+}") for part in parts)
    default = route.route.path == "$default"
    return (not default, not greedy, literal, route.route.method != "ANY")


def _match_path(template: str, segments: list[str]) -> dict[str, str] | None:
    if template == "$default":
        return {}
    parts = template.split("/")[1:]
    parameters: dict[str, str] = {}
    for index, part in enumerate(parts):
        if part.startswith("{") and part.endswith("+}"):
            rest = segments[index:]
            if not rest or rest == [""]:
                return None
            parameters[part[1:-2]] = unquote("/".join(rest))
            return parameters
        if index >= len(segments):
            return None
        if part.startswith("{") and part.endswith("}"):
            if segments[index] == "":
                return None
            parameters[part[1:-1]] = unquote(segments[index])
        elif part != segments[index]:
            return None
    return parameters if len(parts) == len(segments) else None


def build_event(request: Request, route: Route, path_parameters: dict[str, str]) -> dict[str, Any]:
    """The payload-2.0 event API Gateway sends for this request."""
    raw_path, _, raw_query = request.target.partition("?")
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        lower = name.lower()
        if lower == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
        else:
            headers[lower] = f"{headers[lower]},{value}" if lower in headers else value
    now = time.time()
    request_id = _request_id()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "domainName": headers.get("host", "127.0.0.1"),
            "domainPrefix": headers.get("host", "127.0.0.1").split(".")[0],
            "http": {
                "method": request.method,
                "path": raw_path,
                "protocol": request.protocol,
                "sourceIp": request.source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route.key,
            "stage": "$default",
            "time": datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    query = query_parameters(raw_query)
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    if request.body:
        if _TEXT_TYPES.match(headers.get("content-type", "").split(";")[0].strip()):
            event["body"] = request.body.decode("utf-8", errors="replace")
        else:
            event["body"] = base64.b64encode(request.body).decode("ascii")
            event["isBase64Encoded"] = True
    return event


def query_parameters(raw_query: str) -> dict[str, str]:
    """Repeated parameters are joined with commas, as API Gateway does in payload 2.0."""
    joined: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    return joined


def _request_id() -> str:
    # API Gateway request ids look like "JKJaXmPLvHcESHA=": 10 random bytes, base64.
    return base64.b64encode(secrets.token_bytes(10)).decode("ascii")


def to_response(result: Any, request_id: str) -> Response:
    """What API Gateway sends back for a handler's return value (payload 2.0 response rules)."""
    try:
        if isinstance(result, dict) and "statusCode" in result:
            return _structured_response(result, request_id)
        # Without a statusCode, API Gateway treats the whole return value as a JSON body.
        body = json.dumps(result).encode("utf-8")
        return _with_defaults(200, [("content-type", "application/json")], body, request_id)
    except (TypeError, ValueError):
        return error_response(*INTERNAL_ERROR, request_id)


def _structured_response(result: dict[str, Any], request_id: str) -> Response:
    status = result["statusCode"]
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise ValueError(f"invalid statusCode {status!r}")
    headers = [(str(name).lower(), str(value)) for name, value in (result.get("headers") or {}).items()]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((str(name).lower(), str(value)) for value in values)
    headers.extend(("set-cookie", str(cookie)) for cookie in result.get("cookies") or [])
    body = result.get("body")
    if body is None:
        payload = b""
    elif not isinstance(body, str):
        raise ValueError("body must be a string, as API Gateway requires")
    elif result.get("isBase64Encoded"):
        payload = base64.b64decode(body)
    else:
        payload = body.encode("utf-8")
    return _with_defaults(status, headers, payload, request_id)


def error_response(status: int, body: dict[str, str], request_id: str) -> Response:
    return _with_defaults(
        status, [("content-type", "application/json")], json.dumps(body).encode(), request_id
    )


def _with_defaults(status: int, headers: list[tuple[str, str]], body: bytes, request_id: str) -> Response:
    names = {name for name, _ in headers}
    headers = [(name, value) for name, value in headers if name != "content-length"]
    if "content-type" not in names and body:
        headers.append(("content-type", "text/plain; charset=utf-8"))
    headers.append(("apigw-requestid", request_id))
    headers.append(("content-length", str(len(body))))
    return Response(status, headers, body)
