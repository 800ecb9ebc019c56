"""Runs handlers in this process the way the Lambda runtime calls them: one call at a time per function."""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from local.template import ACCOUNT_ID, REGION, FunctionSpec

log = logging.getLogger("local.lambda")


class FunctionError(Exception):
    """The handler raised: Lambda reports this as an Unhandled function error."""


@dataclass
class LambdaContext:
    """The attributes of the real context object that handlers and powertools read."""

    function_name: str
    memory_limit_in_mb: int
    timeout_s: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/[$LATEST]{self.aws_request_id.replace('-', '')}"

    def get_remaining_time_in_millis(self) -> int:
        elapsed_ms = int((time.monotonic() - self.started) * 1000)
        return max(self.timeout_s * 1000 - elapsed_ms, 0)


class LambdaHost:
    """Imports each handler once (its cold start) and serialises calls per function.

    A deployed function runs one event at a time per instance; one lock per function gives
    handlers the same guarantee for their module-level state.
    """

    def __init__(self, functions: list[FunctionSpec]) -> None:
        self._functions = {function.name: function for function in functions}
        self._handlers: dict[str, Callable[[Any, Any], Any]] = {}
        self._locks = {name: threading.Lock() for name in self._functions}
        self._import_lock = threading.Lock()
        for function in functions:
            if str(function.code_dir) not in sys.path:
                sys.path.insert(0, str(function.code_dir))

    def invoke(self, name: str, event: Any) -> Any:
        """Returns the handler's result; raises FunctionError when the handler raised."""
        spec = self._functions[name]
        with self._locks[name]:
            handler = self._handler(spec)
            context = LambdaContext(spec.name, spec.memory_mb, spec.timeout_s)
            try:
                return handler(event, context)
            except Exception as error:
                log.exception("%s failed (request %s)", name, context.aws_request_id)
                raise FunctionError(f"{type(error).__name__}: {error}") from error

    def warm(self, name: str) -> None:
        """Imports the handler now (its cold start); an import error is logged and retried on use."""
        with self._locks[name], contextlib.suppress(FunctionError):
            self._handler(self._functions[name])

    def _handler(self, spec: FunctionSpec) -> Callable[[Any, Any], Any]:
        if spec.name not in self._handlers:
            module_name, _, attribute = spec.handler.rpartition(".")
            with self._import_lock:  # two first calls must not import one module twice at once
                try:
                    module = importlib.import_module(module_name)
                except Exception as error:
                    log.exception("%s: cannot import %s", spec.name, module_name)
                    raise FunctionError(f"Runtime.ImportModuleError: {error}") from error
            self._handlers[spec.name] = getattr(module, attribute)
        return self._handlers[spec.name]
