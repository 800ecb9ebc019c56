"""Domain errors. Each carries what the client needs; shared/http_errors.py turns them into problems."""

from typing import Any


class DomainError(Exception):
    status = 400
    problem = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class InvalidRequest(DomainError):
    problem = "validation-error"
    title = "The request is not valid"

    def __init__(self, detail: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail, errors=errors or [])


class UnsupportedMediaType(DomainError):
    status = 415
    problem = "unsupported-media-type"
    title = "Only application/json is accepted"


class PayloadTooLarge(DomainError):
    status = 413
    problem = "payload-too-large"
    title = "The request body is too large"


class SegmentNotFound(DomainError):
    status = 404
    problem = "segment-not-found"
    title = "Segment not found"

    def __init__(self, slug: str) -> None:
        super().__init__(f"No segment with slug {slug!r}", slug=slug)


class ImportNotFound(DomainError):
    status = 404
    problem = "import-not-found"
    title = "Import not found"

    def __init__(self, slug: str, import_id: str) -> None:
        super().__init__(f"Segment {slug!r} has no import {import_id!r}", slug=slug, import_id=import_id)


class SegmentsMissing(DomainError):
    status = 404
    problem = "segments-not-found"
    title = "Some segments do not exist"

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"These segments do not exist: {', '.join(missing)}", missing=missing)


class SegmentExists(DomainError):
    status = 409
    problem = "segment-exists"
    title = "Segment already exists"

    def __init__(self, slug: str) -> None:
        super().__init__(f"A segment with slug {slug!r} already exists", slug=slug)


class NoFreeBuckets(DomainError):
    status = 409
    problem = "exclusion-group-full"
    title = "Not enough free space in the exclusion group"

    def __init__(self, group: str, free_percent: float, resizing: str | None = None) -> None:
        room = (
            f"the largest free gap is {free_percent}%"
            if resizing is None
            else f"the most {resizing!r} can have is {free_percent}%"
        )
        super().__init__(
            f"Exclusion group {group!r} has no free range that large; {room}",
            exclusion_group=group,
            free_percent=free_percent,
        )


class ServiceBusy(DomainError):
    status = 503
    problem = "busy"
    title = "Too many concurrent changes, try again"

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ConcurrentChange(Exception):
    """A write's condition failed because something changed since it was read; the caller retries."""

    def __init__(self, changed_segments: list[str] | None = None) -> None:
        super().__init__(changed_segments)
        self.changed_segments = changed_segments or []
