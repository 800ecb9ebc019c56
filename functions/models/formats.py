"""The SPEC's formats for slugs, user ids and timestamps, shared by request models and path parsing.

Kept apart from the request bodies so that routes without a body never load their schemas.
"""

import re
from datetime import UTC, datetime

from models.errors import InvalidRequest

SLUG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"
SLUG_RE = re.compile(SLUG_PATTERN, re.ASCII)
USER_ID_RE = re.compile(r"^[1-9][0-9]{0,18}$", re.ASCII)
MAX_USER_ID = 2**63 - 1
IMPORT_ID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$", re.ASCII)  # a ULID in Crockford's base 32

TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$", re.ASCII)


def parse_timestamp(text: str | None) -> datetime | None:
    """RFC 3339 UTC with a Z; fractions beyond microseconds are cut, not rounded."""
    if text is None:
        return None
    if not TIMESTAMP_RE.fullmatch(text):
        raise InvalidRequest(
            "timestamps are RFC 3339 UTC with a Z, like 2023-08-29T10:00:00Z",
            errors=[{"field": "expires_at", "message": "not an RFC 3339 UTC timestamp"}],
        )
    whole, _, fraction = text[:-1].partition(".")
    try:
        moment = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError as error:
        raise InvalidRequest(
            "not a valid date and time", errors=[{"field": "expires_at", "message": "not a valid date"}]
        ) from error
    return moment.replace(microsecond=int((fraction + "000000")[:6]))
