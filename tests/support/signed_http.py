"""HTTP to the service as a client in an AWS account calls it: SigV4-signed (execute-api), over HTTPS.

`ApiClient` is a requests session bound to the API's address: `api.get("/segments")`. The address is
the deployed API's own, `https://{apiId}.execute-api.localhost:4566` on the emulator; since Python
does not resolve `*.localhost` (curl does), a request to such a host is sent to localhost with the
API's name in its Host header, which is what curl sends too. Nothing here knows which stack it talks to.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SIGNED_HEADERS = ("host", "content-type")


class SigV4(requests.auth.AuthBase):
    """Signs each request as botocore signs an AWS call (SigV4), for API Gateway's IAM authorizer."""

    def __init__(self, access_key: str, secret_key: str, region: str, service: str = "execute-api") -> None:
        self.credentials = Credentials(access_key, secret_key)
        self.region = region
        self.service = service

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        headers = {name: value for name, value in request.headers.items() if name.lower() in SIGNED_HEADERS}
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        if not isinstance(body, bytes):
            raise TypeError("a streamed body cannot be signed; pass bytes")
        signed = AWSRequest(method=request.method, url=request.url, data=body, headers=headers)
        SigV4Auth(self.credentials, self.service, self.region).add_auth(signed)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in signed.headers:
                request.headers[name] = signed.headers[name]
        return request


def connection_for(url: str) -> tuple[str, str | None]:
    """(the URL to connect to, the Host header to send): `*.localhost` hosts are reached at localhost."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host.endswith(".localhost"):
        netloc = "localhost" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc)), parts.netloc
    return url, None


class ApiClient(requests.Session):
    """A session bound to one API: relative paths are resolved against `base_url`, every call is signed."""

    def __init__(self, base_url: str, auth: requests.auth.AuthBase | None, verify: str | bool = True) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.trust = verify  # a CA bundle's path, or True for the system's
        self.verify = verify

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        url = url.decode() if isinstance(url, bytes) else url
        target, host = connection_for(url if "://" in url else f"{self.base_url}{url}")
        if host is not None:
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "Host": host}
        kwargs.setdefault("timeout", 60)
        # Per request: requests lets REQUESTS_CA_BUNDLE (set on this machine) override a session's verify.
        kwargs.setdefault("verify", self.trust)
        return super().request(method, target, *args, **kwargs)

    def download(self, link: str) -> requests.Response:
        """A presigned link is fetched as a browser would: unsigned, with only what the link carries."""
        return requests.get(link, verify=self.trust, timeout=60)
