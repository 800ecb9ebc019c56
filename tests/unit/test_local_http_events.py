"""API Gateway payload 2.0: routing, event building and response mapping."""

import base64
import json

from local.http_events import Request, Route, RouteTable, build_event, query_parameters, to_response
from local.template import HttpRoute

ROUTES = RouteTable(
    [
        Route("Get", HttpRoute("GET", "/segments/{slug}")),
        Route("List", HttpRoute("GET", "/segments")),
        Route("Special", HttpRoute("GET", "/segments/special")),
        Route("Any", HttpRoute("ANY", "/files/{proxy+}")),
    ]
)


def request(target: str, body: bytes = b"", content_type: str = "application/json") -> Request:
    headers = [("Host", "127.0.0.1:3000"), ("Content-Type", content_type), ("X-Twice", "a"), ("X-Twice", "b")]
    return Request("GET", target, headers, body, "127.0.0.1")


def test_path_parameters_are_url_decoded() -> None:
    route, parameters = ROUTES.match("GET", "/segments/A%2FB") or (None, None)
    assert route is not None and route.function == "Get"
    assert parameters == {"slug": "A/B"}


def test_a_literal_path_beats_a_parameter() -> None:
    matched = ROUTES.match("GET", "/segments/special")
    assert matched is not None and matched[0].function == "Special"


def test_a_greedy_parameter_takes_the_rest_of_the_path() -> None:
    matched = ROUTES.match("DELETE", "/files/a/b")
    assert matched is not None and matched[1] == {"proxy": "a/b"}


def test_no_route_for_an_empty_parameter_or_another_method() -> None:
    assert ROUTES.match("GET", "/segments/") is None
    assert ROUTES.match("POST", "/segments") is None


def test_repeated_query_parameters_are_comma_joined() -> None:
    assert query_parameters("a=1&a=2&b=") == {"a": "1,2", "b": ""}


def test_the_event_has_the_payload_2_shape() -> None:
    event = build_event(
        request("/segments/X?limit=5", b'{"a": 1}'),
        Route("Get", HttpRoute("GET", "/segments/{slug}")),
        {"slug": "X"},
    )
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /segments/{slug}"
    assert (event["rawPath"], event["rawQueryString"]) == ("/segments/X", "limit=5")
    assert event["headers"]["x-twice"] == "a,b"
    assert event["queryStringParameters"] == {"limit": "5"}
    assert event["body"] == '{"a": 1}' and event["isBase64Encoded"] is False
    assert event["requestContext"]["routeKey"] == "GET /segments/{slug}"
    assert isinstance(event["requestContext"]["timeEpoch"], int)


def test_a_binary_body_is_base64_encoded() -> None:
    event = build_event(
        request("/f", b"\xff", "application/octet-stream"), Route("Any", HttpRoute("ANY", "/f")), {}
    )
    assert (event["body"], event["isBase64Encoded"]) == (base64.b64encode(b"\xff").decode(), True)


def test_no_query_and_no_body_leave_the_fields_out() -> None:
    event = build_event(request("/segments"), Route("List", HttpRoute("GET", "/segments")), {})
    assert "queryStringParameters" not in event and "body" not in event and "pathParameters" not in event


def test_a_structured_response_is_sent_as_is() -> None:
    response = to_response(
        {"statusCode": 201, "headers": {"Location": "/x"}, "body": "{}", "cookies": ["a=1"]}, "rid"
    )
    assert response.status == 201
    assert ("location", "/x") in response.headers and ("set-cookie", "a=1") in response.headers
    assert response.body == b"{}"


def test_a_return_value_without_status_code_is_a_json_200() -> None:
    response = to_response({"ok": True}, "rid")
    assert (response.status, json.loads(response.body)) == (200, {"ok": True})
    assert ("content-type", "application/json") in response.headers


def test_an_invalid_response_is_a_500() -> None:
    response = to_response({"statusCode": "abc"}, "rid")
    assert (response.status, json.loads(response.body)) == (500, {"message": "Internal Server Error"})
