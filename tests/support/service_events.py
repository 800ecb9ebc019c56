"""botocore event hooks on every DynamoDB and S3 call the service makes, whichever of its clients makes it.

The service's DynamoDB calls go through several botocore clients: pynamodb makes one per model class
(and lets no caller reach it), and the store has one of its own (`dal.entities.shared_connection`).
Tests and benchmarks that watch or bend those calls (fault injection, the ClientRequestToken and
lagging-index bridges, the call meter) register their handlers here, on `service_client().meta.events`,
with botocore's own `register`, `register_first`, `register_last` and `unregister`.

The hooks reach the clients as botocore built-in handlers, which every session made after this module
is imported carries (moto's own reach them the same way), and they act only on calls made from the
service's code (a frame under functions/ on the stack): a test's own clients, reading what was
written, are never touched. tests/conftest.py and the benchmarks import this module before any
session exists.
"""

import inspect
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from botocore.handlers import BUILTIN_HANDLERS

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
EVENTS = tuple(
    f"{stage}.{service}"
    for service in ("dynamodb", "s3")
    for stage in ("provide-client-params", "before-call", "after-call")
)
FIRST, MIDDLE, LAST = 0, 1, 2
Handler = Callable[..., Any]


@cache
def _in_functions(filename: str) -> bool:
    return Path(filename).resolve().is_relative_to(FUNCTIONS)


def _made_by_the_service() -> bool:
    frame = inspect.currentframe()
    while frame is not None:
        if _in_functions(frame.f_code.co_filename):
            return True
        frame = frame.f_back
    return False


class ServiceEvents:
    """The part of botocore's HierarchicalEmitter that tests use, for the service's calls."""

    def __init__(self) -> None:
        self._handlers: list[tuple[int, str, Handler, str | None]] = []

    def register(self, event_name: str, handler: Handler, unique_id: str | None = None) -> None:
        self._add(MIDDLE, event_name, handler, unique_id)

    def register_first(self, event_name: str, handler: Handler, unique_id: str | None = None) -> None:
        self._add(FIRST, event_name, handler, unique_id)

    def register_last(self, event_name: str, handler: Handler, unique_id: str | None = None) -> None:
        self._add(LAST, event_name, handler, unique_id)

    def unregister(
        self, event_name: str, handler: Handler | None = None, unique_id: str | None = None
    ) -> None:
        self._handlers = [
            entry
            for entry in self._handlers
            if not (entry[1] == event_name and (entry[3] == unique_id if unique_id else entry[2] == handler))
        ]

    def _add(self, section: int, event_name: str, handler: Handler, unique_id: str | None) -> None:
        if unique_id is not None and any(entry[3] == unique_id for entry in self._handlers):
            return  # botocore ignores a second registration under one unique id
        self._handlers.append((section, event_name, handler, unique_id))

    def emit(self, **kwargs: Any) -> Any:
        """Handlers of the event or of a prefix of it, first, middle, then last, in registration order
        within each; the first answer that is not None ends a before-call, as botocore's does."""
        event = kwargs["event_name"]
        matching = [
            entry for entry in self._handlers if event == entry[1] or event.startswith(f"{entry[1]}.")
        ]
        if not matching or not _made_by_the_service():
            return None
        for _, _, handler, _ in sorted(matching, key=lambda entry: entry[0]):
            answer = handler(**kwargs)
            if answer is not None and event.startswith("before-call."):
                return answer
        return None


class _Meta:
    def __init__(self, events: ServiceEvents) -> None:
        self.events = events


class ServiceClient:
    """Stands where a botocore client's `meta.events` is expected."""

    def __init__(self, events: ServiceEvents) -> None:
        self.meta = _Meta(events)


EVENTS_OF_THE_SERVICE = ServiceEvents()
BUILTIN_HANDLERS.extend((event, EVENTS_OF_THE_SERVICE.emit) for event in EVENTS)


def service_client() -> ServiceClient:
    """Every DynamoDB and S3 client the service makes, as one client's `meta.events`."""
    return ServiceClient(EVENTS_OF_THE_SERVICE)
