"""HTTP edges shared by every API handler: the resolver, body and path parsing, problem responses.

Domain errors become HTTP responses here and nowhere else.
"""

import base64
import json
import re
from typing import Any, Protocol, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.typing import LambdaContext

from models.errors import DomainError, InvalidRequest, PayloadTooLarge, ServiceBusy, UnsupportedMediaType
from models.formats import IMPORT_ID_RE, MAX_USER_ID, SLUG_RE, USER_ID_RE
from shared.observability import logger, metrics, tracer

MAX_BODY_BYTES = 64 * 1024
MAX_LIMIT = 1000
LIMIT_RE = re.compile(r"^[1-9][0-9]{0,3}$", re.ASCII)
PROBLEM_JSON = "application/problem+json"
Request = TypeVar("Request", covariant=True)


class RequestModel(Protocol[Request]):
    def parse(self, document: dict[str, Any]) -> Request: ...


def build_resolver() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver()

    @app.exception_handler(DomainError)
    def _domain_error(error: DomainError) -> Response:
        headers = {"Retry-After": str(error.retry_after)} if isinstance(error, ServiceBusy) else None
        return problem(error.status, error.problem, error.title, error.detail, headers, **error.extra)

    @app.not_found
    def _no_route(_: Exception) -> Response:
        return problem(404, "not-found", "Not found", "No such route")

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response:
        logger.exception("unexpected error")
        return problem(500, "internal-error", "Internal error", "The request could not be completed")

    return app


def problem(
    status: int, kind: str, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    body = {"type": f"/problems/{kind}", "title": title, "status": status, "detail": detail, **extra}
    return Response(status, PROBLEM_JSON, json.dumps(body), headers=headers)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, "application/json", json.dumps(body), headers=headers)


def parse_body(event: APIGatewayProxyEventV2, model: RequestModel[Request]) -> Request:
    """JSON only, bounded in size, unknown fields rejected: every failure is a 4xx problem."""
    content_type = (event.headers or {}).get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType("Send the body as application/json")
    try:
        raw = event.decoded_body or ""
    except ValueError:  # isBase64Encoded with bytes that are not base64, or not UTF-8: bad input
        raise InvalidRequest(
            "The body is not UTF-8 JSON", errors=[{"field": "body", "message": "not UTF-8 text"}]
        ) from None
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The body may be at most {MAX_BODY_BYTES} bytes")
    try:
        document = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        message = "nesting too deep" if isinstance(error, RecursionError) else str(error)[:200]
        raise InvalidRequest(
            "The body is not valid JSON", errors=[{"field": "body", "message": message}]
        ) from None
    if not isinstance(document, dict):
        raise InvalidRequest("The body must be a JSON object")
    return model.parse(document)


def path_slug(event: APIGatewayProxyEventV2) -> str:
    slug = (event.path_parameters or {}).get("slug", "")
    if not SLUG_RE.fullmatch(slug):
        raise InvalidRequest(
            "slug must be 1 to 100 characters of A-Z a-z 0-9 _ . - starting with a letter or digit",
            errors=[{"field": "slug", "message": "not a valid slug"}],
        )
    return slug


def path_import_id(event: APIGatewayProxyEventV2) -> str:
    import_id = (event.path_parameters or {}).get("import_id", "")
    if not IMPORT_ID_RE.fullmatch(import_id):
        raise InvalidRequest(
            "import_id must be an import's id, 26 characters like 01J9Z3Q8F6T5E4D3C2B1A0ZYXW",
            errors=[{"field": "import_id", "message": "not a valid import id"}],
        )
    return import_id


def path_user_id(event: APIGatewayProxyEventV2) -> int:
    return parse_user_id((event.path_parameters or {}).get("user_id", ""))


def parse_user_id(text: str, field: str = "user_id") -> int:
    if not USER_ID_RE.fullmatch(text) or int(text) > MAX_USER_ID:
        raise InvalidRequest(
            "user_id must be a positive 64-bit integer in canonical decimal",
            errors=[{"field": field, "message": "not a valid user id"}],
        )
    return int(text)


def query_params(event: APIGatewayProxyEventV2, allowed: set[str]) -> dict[str, str]:
    params = dict(event.query_string_parameters or {})
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidRequest(
            f"Unknown query parameters: {', '.join(unknown)}",
            errors=[{"field": name, "message": "unknown parameter"} for name in unknown],
        )
    return params


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def lambda_entry(app: APIGatewayHttpResolver) -> Any:
    """The Lambda entry point of an API function: correlation id, trace and metrics around the route."""

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return app.resolve(event, context)

    return lambda_handler


def page_request(params: dict[str, str]) -> tuple[int, str | None]:
    """`limit` 1 to 1,000 (default 100) and an opaque `cursor` from a previous page."""
    limit_text = params.get("limit", "100")
    if not LIMIT_RE.fullmatch(limit_text) or not 1 <= int(limit_text) <= MAX_LIMIT:
        raise InvalidRequest(
            f"limit must be an integer from 1 to {MAX_LIMIT}",
            errors=[{"field": "limit", "message": f"must be an integer from 1 to {MAX_LIMIT}"}],
        )
    cursor = params.get("cursor")
    if cursor is None:
        return int(limit_text), None
    try:
        after = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        after = ""
    if not SLUG_RE.fullmatch(after) or encode_cursor(after) != cursor:
        raise InvalidRequest(
            "cursor is not one this service issued", errors=[{"field": "cursor", "message": "invalid"}]
        )
    return int(limit_text), after


def import_page_request(params: dict[str, str]) -> tuple[int, str | None]:
    """`limit` and `cursor` as for segments; a cursor of imports names the last import of a page."""
    limit, after = page_request(params)
    if after is not None and not IMPORT_ID_RE.fullmatch(after):
        raise InvalidRequest(
            "cursor is not one this service issued", errors=[{"field": "cursor", "message": "invalid"}]
        )
    return limit, after


def encode_cursor(slug: str) -> str:
    return base64.urlsafe_b64encode(slug.encode("ascii")).decode("ascii").rstrip("=")


def query_flag(params: dict[str, str], name: str) -> bool:
    value = params.get(name, "false")
    if value not in ("true", "false"):
        raise InvalidRequest(
            f"{name} must be true or false", errors=[{"field": name, "message": "true or false"}]
        )
    return value == "true"
