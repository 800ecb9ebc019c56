"""Loaded by `st run` (SCHEMATHESIS_HOOKS): every request of the contract run is SigV4-signed, as the
API's IAM authorizer requires, with schemathesis' public auth hook for a `requests` auth object."""

import os

import schemathesis

from tests.support.signed_http import SigV4

# A documented function schemathesis attaches to `auth` at import, which its type does not declare.
schemathesis.auth.set_from_requests(  # type: ignore[attr-defined]
    SigV4(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"], os.environ["AWS_REGION"])
)
