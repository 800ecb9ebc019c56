"""Request bodies as the SPEC fixes them: a JSON Schema for the shape, then the rules no schema says.

The shape (object, known fields, types, lengths, list sizes) is a JSON Schema checked by
fastjsonschema, the engine of powertools' validation utility; it compiles each schema to Python
once per container. Slugs, percent precision, expiry choices and duplicates are checked here after
it. Either failure is a 400 problem naming the field. (pydantic did this before and cost the
body routes a quarter of their cold start: see docs/performance.md.)
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

from logic.buckets import percent_to_units
from logic.memberships import SegmentAdd
from models.domain import ImportMode
from models.errors import InvalidRequest
from models.formats import SLUG_RE, parse_timestamp

MAX_TTL_SECONDS = 315_360_000
MAX_SLUGS_PER_UPDATE = 50
MAX_DESCRIPTION = 1000
MAX_TIMESTAMP = 40
SLUG_RULE = "1 to 100 characters of A-Z a-z 0-9 _ . - starting with a letter or digit"

_SLUG: dict[str, Any] = {"type": "string"}
_PERCENT: dict[str, Any] = {"type": ["number", "null"]}
_DESCRIPTION: dict[str, Any] = {"type": "string", "maxLength": MAX_DESCRIPTION}

CREATE_SEGMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["slug"],
    "properties": {
        "slug": _SLUG,
        "description": _DESCRIPTION,
        "auto_percent": _PERCENT,
        "exclusion_group": {"type": ["string", "null"]},
    },
}
PATCH_SEGMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"description": _DESCRIPTION, "auto_percent": _PERCENT},
}
USER_SEGMENTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "add": {
            "type": "array",
            "maxItems": MAX_SLUGS_PER_UPDATE,
            "items": {
                "type": ["string", "object"],
                "additionalProperties": False,
                "required": ["slug"],
                "properties": {
                    "slug": _SLUG,
                    "ttl_seconds": {
                        "type": ["integer", "null"],
                        "exclusiveMinimum": 0,
                        "maximum": MAX_TTL_SECONDS,
                    },
                    "expires_at": {"type": ["string", "null"], "maxLength": MAX_TIMESTAMP},
                },
            },
        },
        "remove": {"type": "array", "maxItems": MAX_SLUGS_PER_UPDATE, "items": _SLUG},
    },
}


CREATE_IMPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["mode"],
    "properties": {
        "mode": {"enum": ["add", "remove"]},
        "ttl_seconds": {"type": ["integer", "null"], "exclusiveMinimum": 0, "maximum": MAX_TTL_SECONDS},
        "expires_at": {"type": ["string", "null"], "maxLength": MAX_TIMESTAMP},
    },
}


class CreateSegmentRequest(NamedTuple):
    slug: str
    description: str
    auto_percent: int | None  # bucket units, hundredths of a percent
    exclusion_group: str | None

    @classmethod
    def parse(cls, document: dict[str, Any]) -> "CreateSegmentRequest":
        check_shape(CREATE_SEGMENT_SCHEMA, document)
        group = document.get("exclusion_group")
        percent = _percent_units(document.get("auto_percent"))
        if group is not None and percent is None:
            raise _invalid("exclusion_group", "exclusion_group needs auto_percent")
        return cls(
            _slug(document["slug"], "slug"),
            document.get("description", ""),
            percent,
            None if group is None else _slug(group, "exclusion_group"),
        )


class PatchSegmentRequest(NamedTuple):
    description: str | None
    auto_percent: int | None
    changes_percent: bool  # auto_percent was sent, even as null (which turns percentage off)

    @classmethod
    def parse(cls, document: dict[str, Any]) -> "PatchSegmentRequest":
        check_shape(PATCH_SEGMENT_SCHEMA, document)
        return cls(
            document.get("description"),
            _percent_units(document.get("auto_percent")),
            "auto_percent" in document,
        )


class UserSegmentsRequest(NamedTuple):
    add: list[SegmentAdd]
    remove: list[str]

    @classmethod
    def parse(cls, document: dict[str, Any]) -> "UserSegmentsRequest":
        check_shape(USER_SEGMENTS_SCHEMA, document)
        add = [_add_item(item, f"add.{index}") for index, item in enumerate(document.get("add", []))]
        remove = [_slug(slug, f"remove.{index}") for index, slug in enumerate(document.get("remove", []))]
        added = [slug for slug, _, _ in add]
        if not added and not remove:
            raise _invalid("body", "add or remove at least one segment")
        if len(added) + len(remove) > MAX_SLUGS_PER_UPDATE:
            raise _invalid("body", f"at most {MAX_SLUGS_PER_UPDATE} slugs in one request")
        for name, slugs in (("add", added), ("remove", remove)):
            repeated = sorted({slug for slug in slugs if slugs.count(slug) > 1})
            if repeated:
                raise _invalid(name, f"{name} names a slug twice: {', '.join(repeated)}")
        both = sorted(set(added) & set(remove))
        if both:
            raise _invalid("body", f"slugs in both add and remove: {', '.join(both)}")
        # timestamps are read last, so a body's shape and slug rules are reported before its dates
        return cls(
            [SegmentAdd(slug, ttl, parse_timestamp(expires_at)) for slug, ttl, expires_at in add], remove
        )


class CreateImportRequest(NamedTuple):
    mode: ImportMode
    ttl_seconds: int | None
    expires_at: datetime | None

    @classmethod
    def parse(cls, document: dict[str, Any]) -> "CreateImportRequest":
        check_shape(CREATE_IMPORT_SCHEMA, document)
        mode = ImportMode(document["mode"])
        ttl, expires_at = document.get("ttl_seconds"), document.get("expires_at")
        if ttl is not None and not isinstance(ttl, int):
            raise _invalid("ttl_seconds", "must be a whole number of seconds")
        if ttl is not None and expires_at is not None:
            raise _invalid("body", "give at most one of ttl_seconds and expires_at")
        if mode is ImportMode.REMOVE and (ttl is not None or expires_at is not None):
            raise _invalid("mode", "ttl_seconds and expires_at go only with mode add")
        return cls(mode, ttl, parse_timestamp(expires_at))


def check_shape(schema: dict[str, Any], document: Any) -> None:
    """400 with the first field that breaks the schema, named as a dotted path (add.0.slug)."""
    from fastjsonschema import JsonSchemaValueException

    try:
        _validator(schema)(document)
    except JsonSchemaValueException as error:
        field = ".".join(str(part) for part in error.path[1:]) or "body"
        raise _invalid(field, error.message.removeprefix(f"{error.name} ")) from None


def compile_schemas() -> None:
    """Compile every request schema now, not in a first request (SnapStart: before the snapshot)."""
    for schema in (CREATE_SEGMENT_SCHEMA, PATCH_SEGMENT_SCHEMA, USER_SEGMENTS_SCHEMA, CREATE_IMPORT_SCHEMA):
        _validator(schema)


_VALIDATORS: dict[int, Callable[[Any], Any]] = {}


def _validator(schema: dict[str, Any]) -> Callable[[Any], Any]:
    """Compiled on first use (a few milliseconds), then kept for the container's life."""
    found = _VALIDATORS.get(id(schema))
    if found is None:
        import fastjsonschema

        found = _VALIDATORS[id(schema)] = fastjsonschema.compile(schema)
    return found


def _add_item(item: str | dict[str, Any], field: str) -> tuple[str, int | None, str | None]:
    """(slug, ttl_seconds, expires_at as sent) of one entry of `add`."""
    if isinstance(item, str):
        return _slug(item, field), None, None
    ttl, expires_at = item.get("ttl_seconds"), item.get("expires_at")
    if ttl is not None and not isinstance(ttl, int):
        raise _invalid(f"{field}.ttl_seconds", "must be a whole number of seconds")
    if ttl is not None and expires_at is not None:
        raise _invalid(field, "give at most one of ttl_seconds and expires_at")
    return _slug(item["slug"], f"{field}.slug"), ttl, expires_at


def _slug(value: str, field: str) -> str:
    if not SLUG_RE.fullmatch(value):
        raise _invalid(field, f"not a valid slug: {SLUG_RULE}")
    return value


def _percent_units(value: float | None) -> int | None:
    """0..100 with at most two decimals, as bucket units (hundredths of a percent)."""
    if value is None:
        return None
    try:
        return percent_to_units(value)
    except ValueError as error:
        raise _invalid("auto_percent", str(error)) from None


def _invalid(field: str, message: str) -> InvalidRequest:
    return InvalidRequest("The body does not match the schema", errors=[{"field": field, "message": message}])
