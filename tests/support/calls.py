"""Count the AWS API calls a piece of code makes, with botocore's own event hooks."""

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.client import BaseClient


@contextmanager
def counting_calls() -> Iterator[Counter[str]]:
    """Every DynamoDB or S3 operation made inside the block, by name, whichever client made it."""
    counts: Counter[str] = Counter()
    original = BaseClient._make_api_call

    def counted(self: BaseClient, operation_name: str, api_params: Any) -> Any:
        counts[operation_name] += 1
        return original(self, operation_name, api_params)

    BaseClient._make_api_call = counted
    try:
        yield counts
    finally:
        BaseClient._make_api_call = original
