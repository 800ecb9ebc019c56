"""DynamoDB's transient failures as the domain's ServiceBusy, so throttling and timeouts answer 503, not 500.

botocore has already retried them (standard mode) by the time they reach the service; what is left is
the caller's to retry later. Every write is conditional or idempotent, so a retried request is safe.
"""

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from botocore.exceptions import ClientError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError

from models.errors import ServiceBusy

BUSY_CODES = {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
TIMEOUTS = (ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)
Store = TypeVar("Store", bound=type)


def is_transient(error: BaseException) -> bool:
    """Throttling or a timeout, found on the error or on what caused it (pynamodb wraps botocore's)."""
    seen: BaseException | None = error
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, TIMEOUTS):
            return True
        code = getattr(seen, "cause_response_code", None)
        if isinstance(seen, ClientError):
            code = seen.response.get("Error", {}).get("Code")
        if code in BUSY_CODES:
            return True
        seen = getattr(seen, "cause", None) or seen.__cause__
    return False


def _busy(error: BaseException) -> ServiceBusy:
    return ServiceBusy("DynamoDB is throttling or slow to answer; try again shortly", retry_after=1)


def _translated(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            result = method(*args, **kwargs)
        except ServiceBusy:
            raise
        except Exception as error:
            if is_transient(error):
                raise _busy(error) from error
            raise
        if isinstance(result, Iterator):
            return _translated_iteration(result)  # queries read lazily, page by page
        return result

    return call


def _translated_iteration(items: Iterator[Any]) -> Iterator[Any]:
    try:
        yield from items
    except Exception as error:
        if is_transient(error):
            raise _busy(error) from error
        raise


def busy_when_transient(store: Store) -> Store:
    """Every public method of the store raises ServiceBusy for a transient DynamoDB failure."""
    for name, member in list(vars(store).items()):
        if not name.startswith("_") and inspect.isfunction(member):
            setattr(store, name, _translated(member))
    return store
