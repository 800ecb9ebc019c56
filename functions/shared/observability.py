"""One logger, tracer and metrics object per container, configured by POWERTOOLS_* variables."""

from collections.abc import Generator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment


class _NoSegment(BaseSegment):
    def close(self, end_time: int | None = None) -> None: ...

    def add_subsegment(self, subsegment: Any) -> None: ...

    def remove_subsegment(self, subsegment: Any) -> None: ...

    def put_annotation(self, key: str, value: Any) -> None: ...

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None: ...

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None: ...


class _NoTracing(BaseProvider):
    """Where tracing is off (tests, the local runtime, sam local): nothing to record, and no X-Ray SDK.

    Importing the X-Ray SDK is a third of a cold start, so it is loaded only where traces are sent.
    """

    @contextmanager
    def in_subsegment(self, name: Any = None, **kwargs: Any) -> Generator[BaseSegment, None, None]:
        yield _NoSegment()

    @asynccontextmanager
    async def in_subsegment_async(self, name: Any = None, **kwargs: Any) -> Any:
        yield _NoSegment()

    def put_annotation(self, key: str, value: Any) -> None: ...

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None: ...

    def patch(self, modules: Sequence[str]) -> None: ...

    def patch_all(self) -> None: ...


def _tracer() -> Tracer:
    """Active with the X-Ray SDK when deployed (Tracing: Active in template.yaml), a no-op elsewhere."""
    if Tracer._is_tracer_disabled():
        return Tracer(provider=_NoTracing(), disabled=True, auto_patch=False)
    return Tracer()


logger = Logger()
tracer = _tracer()
metrics = Metrics()
