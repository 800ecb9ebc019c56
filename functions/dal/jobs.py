"""Jobs: their queues (SQS) and the jobs index the sweeper reads (docs/background-jobs.md).

A job's message only says which job to run; the job's own item in the table (a deleted generation,
a report request) holds where it stands, so a message sent twice, late or again is harmless.
"""

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from dal.entities import GenerationItem, jobs_due_before, jobs_gsi1pk, shared_connection
from dal.transient import busy_when_transient
from shared.clock import to_stored


@busy_when_transient
class SqsJobQueue:
    def __init__(self, url: str, client: Any) -> None:
        self._url = url
        self._client = client

    def send(self, jobs: Iterable[dict[str, Any]]) -> int:
        """Every job, one message each (jobs are few: one per deletion or report; SendMessageBatch would
        save little, and MiniStack's IAM wrongly asks for an action of its own for it)."""
        sent = 0
        for job in jobs:
            body = json.dumps(job, sort_keys=True, separators=(",", ":"))
            self._client.send_message(QueueUrl=self._url, MessageBody=body)
            sent += 1
        return sent

    def retry_later(self, receipt_handle: str, seconds: int) -> None:
        """A message that failed is received again after `seconds`, not after the queue's visibility
        timeout (six times the worker's timeout, far too long a wait between retries)."""
        self._client.change_message_visibility(
            QueueUrl=self._url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
        )


@busy_when_transient
class DynamoJobIndex:
    def due(self, kind: str, now: datetime) -> list[dict[str, Any]]:
        """The jobs of a kind not done and due by `now` (a claimed job is due once it is stale), as raw
        items: one Query of the kind's partition of the jobs index."""
        request: dict[str, Any] = {
            "TableName": GenerationItem.Meta.table_name,
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :kind AND gsi1sk < :due",
            "ExpressionAttributeValues": {
                ":kind": {"S": jobs_gsi1pk(kind)},
                ":due": {"S": jobs_due_before(to_stored(now))},
            },
        }
        client, items = shared_connection().client, []
        while True:
            page = client.query(**request)
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                return items
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def sqs_client() -> Any:
    """An SQS client from the botocore session the table's connection already holds."""
    connection = shared_connection()
    return connection.session.create_client("sqs", region_name=connection.region)
