"""The deployed tests' client: where it connects, and what it signs."""

import requests

from tests.support.signed_http import SigV4, connection_for


def test_an_api_host_under_localhost_is_reached_at_localhost_with_its_name_as_host() -> None:
    url, host = connection_for("https://abc12345.execute-api.localhost:4566/segments?limit=2")
    assert (url, host) == ("https://localhost:4566/segments?limit=2", "abc12345.execute-api.localhost:4566")


def test_any_other_host_is_reached_as_it_is() -> None:
    assert connection_for("https://127.0.0.1:4566/bucket/key") == ("https://127.0.0.1:4566/bucket/key", None)


def test_the_signature_covers_the_host_header_sent_not_the_host_connected_to() -> None:
    # Given a request sent to localhost for the API's host
    request = requests.Request(
        "POST",
        "https://localhost:4566/segments",
        json={"slug": "A"},
        headers={"Host": "abc12345.execute-api.localhost:4566"},
    ).prepare()
    # When it is signed
    SigV4("test", "secret", "us-east-1")(request)
    # Then it carries an execute-api SigV4 signature over the host and content type
    authorization = request.headers["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=test/")
    assert "/us-east-1/execute-api/aws4_request" in authorization
    assert "SignedHeaders=content-type;host;x-amz-date" in authorization
    assert request.headers["X-Amz-Date"]


def test_a_different_host_gives_a_different_signature() -> None:
    def signature(host: str) -> str:
        request = requests.Request("GET", "https://localhost:4566/segments", headers={"Host": host}).prepare()
        SigV4("test", "secret", "us-east-1")(request)
        return request.headers["Authorization"].rsplit("Signature=", 1)[1]

    assert signature("a.execute-api.localhost:4566") != signature("b.execute-api.localhost:4566")
