"""Count the AWS API calls the service makes, with botocore's own event hooks."""

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.support.service_events import service_client

SERVICES = ("dynamodb", "s3")


@contextmanager
def counting_calls() -> Iterator[Counter[str]]:
    """Every DynamoDB or S3 operation the service's code makes inside the block, by name, whichever of
    its clients made it (a test's own reads are not counted): once a call, however often it is retried."""
    counts: Counter[str] = Counter()

    def counted(model: Any, **_: Any) -> None:
        counts[model.name] += 1

    events = service_client().meta.events
    name = f"counting-{id(counts)}"  # its own: a block inside another counts too, and ends only itself
    for service in SERVICES:
        events.register(f"before-call.{service}", counted, unique_id=f"{name}-{service}")
    try:
        yield counts
    finally:
        for service in SERVICES:
            events.unregister(f"before-call.{service}", unique_id=f"{name}-{service}")
