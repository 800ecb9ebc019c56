"""The HTTP front door: API Gateway's routing and payload 2.0 over a threaded HTTP server."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from local.http_events import (
    INTERNAL_ERROR,
    NOT_FOUND,
    Request,
    Response,
    RouteTable,
    build_event,
    error_response,
    to_response,
)
from local.lambda_host import FunctionError, LambdaHost

log = logging.getLogger("local.gateway")

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
ADMIN_PREFIX = "/_local/"

AdminHandler = Callable[[str, str, bytes], tuple[int, Any]]


class Gateway:
    def __init__(self, routes: RouteTable, host: LambdaHost, admin: AdminHandler | None = None) -> None:
        self.routes = routes
        self.host = host
        self.admin = admin

    def handle(self, request: Request) -> Response:
        raw_path = request.target.partition("?")[0]
        if self.admin is not None and raw_path.startswith(ADMIN_PREFIX):
            status, body = self.admin(request.method, raw_path[len(ADMIN_PREFIX) :], request.body)
            return to_response(
                {
                    "statusCode": status,
                    "body": json.dumps(body),
                    "headers": {"content-type": "application/json"},
                },
                "local-admin",
            )
        matched = self.routes.match(request.method, raw_path)
        if matched is None:
            return error_response(*NOT_FOUND, "no-route")
        route, path_parameters = matched
        event = build_event(request, route, path_parameters)
        request_id = event["requestContext"]["requestId"]
        try:
            result = self.host.invoke(route.function, event)
        except FunctionError:
            return error_response(*INTERNAL_ERROR, request_id)
        return to_response(result, request_id)


def serve(gateway: Gateway, host: str, port: int) -> ThreadingHTTPServer:
    """A started-but-not-serving server; the caller runs serve_forever in a thread."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "local-apigateway"
        # Headers and body go out in separate writes; with Nagle on, keep-alive clients wait ~40 ms.
        disable_nagle_algorithm = True

        def _dispatch(self) -> None:
            started = time.perf_counter()
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY_BYTES:
                response = error_response(413, {"message": "Request Entity Too Large"}, "too-large")
                self.close_connection = True
            else:
                body = self._read_body(length)
                request = Request(
                    method=self.command,
                    target=self.path,
                    headers=list(self.headers.items()),
                    body=body,
                    source_ip=self.client_address[0],
                    protocol=self.request_version,
                )
                try:
                    response = gateway.handle(request)
                except Exception:  # the runtime's own bug must not kill the connection silently
                    log.exception("gateway failure")
                    response = error_response(*INTERNAL_ERROR, "gateway")
            self.send_response(response.status)
            for name, value in response.headers:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
            elapsed_ms = (time.perf_counter() - started) * 1000
            log.info("%s %s %d %.1f ms", self.command, self.path, response.status, elapsed_ms)

        def _read_body(self, length: int) -> bytes:
            if "chunked" not in (self.headers.get("transfer-encoding") or "").lower():
                return self.rfile.read(length) if length else b""
            # curl -T and streaming clients send chunks; API Gateway hands Lambda the whole body.
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers, up to the blank line
                pass
            return b"".join(chunks)

        def __getattr__(self, name: str) -> Any:
            # API Gateway routes any method (TRACE, PROPFIND, ...); unmatched ones get its 404.
            if name.startswith("do_"):
                return self._dispatch
            raise AttributeError(name)

        def log_message(self, format: str, *args: Any) -> None:
            """One line per request is logged by _dispatch; silence the default access log."""

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
