"""Scheduled functions: their EventBridge events, on their cron inside the runtime or on demand."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from local import cron
from local.lambda_host import FunctionError, LambdaHost
from local.template import ACCOUNT_ID, REGION, STACK_NAME, FunctionSpec, ScheduleSource

log = logging.getLogger("local.schedules")

ASYNC_RETRIES = 2  # Lambda retries a failed asynchronous invocation twice


def scheduled_event(function: FunctionSpec, schedule: ScheduleSource, moment: datetime) -> dict[str, Any]:
    """The event EventBridge sends a rule's Lambda target."""
    rule = f"{STACK_NAME}-{function.name}{schedule.name}"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{rule}"],
        "detail": {},
    }


def event_for(function: FunctionSpec, schedule: ScheduleSource, moment: datetime) -> Any:
    if schedule.input is not None:
        return json.loads(schedule.input)  # a constant Input replaces the event, as in EventBridge
    return scheduled_event(function, schedule, moment)


def invoke_async(host: LambdaHost, name: str, event: Any, retry_delay_s: float = 1.0) -> bool:
    """Invokes the way EventBridge does (asynchronously): retried twice, then logged as lost."""
    for attempt in range(ASYNC_RETRIES + 1):
        try:
            host.invoke(name, event)
            return True
        except FunctionError:
            if attempt < ASYNC_RETRIES:
                time.sleep(retry_delay_s * (attempt + 1))
    log.error("%s: scheduled invocation failed after %d attempts", name, ASYNC_RETRIES + 1)
    return False


def run_schedules(functions: list[FunctionSpec], host: LambdaHost, stop: threading.Event) -> None:
    plans = [
        (function, schedule, cron.parse(schedule.expression))
        for function in functions
        for schedule in function.schedules
        if schedule.enabled
    ]
    if not plans:
        return
    now = datetime.now(UTC)
    due = [(plan.next_after(now), function, schedule, plan) for function, schedule, plan in plans]
    for moment, function, schedule, _ in due:
        log.info("%s: %s next runs at %s", function.name, schedule.expression, moment.isoformat())
    while not stop.is_set():
        due.sort(key=lambda entry: entry[0])
        moment, function, schedule, plan = due[0]
        if stop.wait(max((moment - datetime.now(UTC)).total_seconds(), 0)):
            return
        event = event_for(function, schedule, moment)
        threading.Thread(target=invoke_async, args=(host, function.name, event), daemon=True).start()
        due[0] = (plan.next_after(moment), function, schedule, plan)
