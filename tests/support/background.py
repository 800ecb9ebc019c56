"""The service's background work driven in-process as Lambda would: the table's stream delivered to
its one reader, and the job queues (moto's SQS, built from template.yaml's queues) to their workers.
"""

import importlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from tests.support.api import FakeContext
from tests.support.events import load_event
from tests.support.streams import StreamTap, deliver, template_filter
from tests.support.table import load_yaml_template

WORKERS = {"cleanup": "queue_cleanup", "report": "queue_reports", "import": "queue_imports"}
QUEUES = {
    "cleanup": ("CleanupQueue", "CleanupDeadLetterQueue"),
    "report": ("ReportQueue", "ReportDeadLetterQueue"),
    "import": ("ImportQueue", "ImportDeadLetterQueue"),
}


def create_queues(client: Any, table: str, s3: Any = None) -> None:
    """Each job queue and its dead-letter queue, with the template's redrive policy; and the imports
    bucket, whose uploads' events go to the import queue as the template's notification says."""
    from tests.support.environment import imports_bucket, queue_url

    resources = load_yaml_template()["Resources"]
    for kind, (queue, dead_letters) in QUEUES.items():
        url = queue_url(table, kind)
        dlq = client.create_queue(QueueName=url.rsplit("/", 1)[1] + "-dlq")["QueueUrl"]
        dlq_arn = client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        receives = resources[queue]["Properties"]["RedrivePolicy"]["maxReceiveCount"]
        assert resources[dead_letters]["Type"] == "AWS::SQS::Queue"
        policy = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": receives}
        client.create_queue(QueueName=url.rsplit("/", 1)[1], Attributes={"RedrivePolicy": json.dumps(policy)})
    import boto3

    notification = resources["ImportsBucket"]["Properties"]["NotificationConfiguration"]
    (queue_configuration,) = notification["QueueConfigurations"]
    import_queue = queue_url(table, "import").rsplit("/", 1)[1]
    s3 = s3 or boto3.client("s3")
    s3.create_bucket(Bucket=imports_bucket(table))
    s3.put_bucket_notification_configuration(
        Bucket=imports_bucket(table),
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": f"arn:aws:sqs:us-east-1:123456789012:{import_queue}",
                    "Events": [queue_configuration["Event"]],
                    "Filter": {
                        "Key": {
                            "FilterRules": [
                                {"Name": rule["Name"], "Value": rule["Value"]}
                                for rule in queue_configuration["Filter"]["S3Key"]["Rules"]
                            ]
                        }
                    },
                }
            ]
        },
    )


class Background:
    def __init__(self, table: str) -> None:
        import boto3

        self.tap = StreamTap(table)
        self.accept = template_filter("StreamFunction")
        self.sqs = boto3.client("sqs")
        self.urls = {kind: os.environ[f"{kind.upper()}_QUEUE_URL"] for kind in WORKERS}

    def stream(self) -> int:
        """Deliver the stream records not delivered yet; how many there were."""
        records = [record for record in self.tap.new_records() if self.accept(record)]
        for response in deliver("stream_table", records, batch_size=100):
            assert response == {"batchItemFailures": []}, response
        return len(records)

    def jobs(self, kind: str, limit: int = 10_000) -> int:
        """Run the queue's jobs until it is empty (a failed job is received again at once, and after the
        template's count of receives SQS moves it to the dead-letter queue); how many ran."""
        ran = 0
        while ran < limit:
            answer = self.sqs.receive_message(
                QueueUrl=self.urls[kind], MaxNumberOfMessages=5, VisibilityTimeout=0, AttributeNames=["All"]
            )
            messages = answer.get("Messages", [])
            if not messages:
                return ran
            ran += len(messages)
            failed = self._invoke(kind, messages)
            for message in messages:
                if message["MessageId"] not in failed:
                    self.sqs.delete_message(QueueUrl=self.urls[kind], ReceiptHandle=message["ReceiptHandle"])
        return ran

    def sweep(self) -> dict[str, int]:
        handler = importlib.import_module("handlers.scheduled_sweeper").lambda_handler
        return dict(handler(load_event("scheduled_sweeper"), FakeContext()))

    def settle(self) -> None:
        """Stream and jobs until nothing more happens (jobs due later wait for a sweep)."""
        while self.stream() + sum(self.jobs(kind) for kind in WORKERS):
            pass

    def finish(self) -> None:
        """Everything the background has to do, as it stands once jobs due later are due: the index has
        caught up and the clock of the workers and the sweeper has passed their waits."""
        from tests.conftest import indexes_caught_up

        self.settle()
        indexes_caught_up()
        with later(LATER):
            self.sweep()
            self.settle()

    def redrive(self, kind: str) -> int:
        """What `aws sqs start-message-move-task --source-arn <dead-letter queue>` does (docs/operations.md):
        every message back to the queue it came from. moto has no StartMessageMoveTask
        (test_moto_still_lacks_the_message_move_task tells when it has)."""
        moved = 0
        while messages := self.dead_letters(kind):
            for message in messages:
                self.sqs.send_message(QueueUrl=self.urls[kind], MessageBody=message["Body"])
                self.sqs.delete_message(
                    QueueUrl=self.urls[kind] + "-dlq", ReceiptHandle=message["ReceiptHandle"]
                )
                moved += 1
        return moved

    def purge(self, kind: str) -> None:
        """Every message of the queue lost."""
        self.sqs.purge_queue(QueueUrl=self.urls[kind])

    def dead_letters(self, kind: str) -> list[dict[str, Any]]:
        url = self.urls[kind] + "-dlq"
        return self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get(
            "Messages", []
        )

    def _invoke(self, kind: str, messages: list[dict[str, Any]]) -> set[str]:
        records = [_sqs_record(message, self.urls[kind]) for message in messages]
        handler = importlib.import_module(f"handlers.{WORKERS[kind]}").lambda_handler
        try:
            response = handler({"Records": records}, FakeContext())
        except BatchProcessingError:  # every record failed: the invocation fails, as Lambda sees it
            return {message["MessageId"] for message in messages}
        return {failure["itemIdentifier"] for failure in response["batchItemFailures"]}


LATER = timedelta(minutes=30)  # past every wait of a job (logic.cleanup.SETTLE) and its staleness
CLOCKED = ("handlers.queue_cleanup", "handlers.queue_reports", "handlers.scheduled_sweeper")


@contextmanager
def later(by: timedelta) -> Iterator[None]:
    """The workers and the sweeper run `by` later than now, as if that much time had passed."""
    from shared.clock import utc_now

    modules = [importlib.import_module(name) for name in CLOCKED]
    saved = [module.utc_now for module in modules]
    for module in modules:
        module.utc_now = lambda: utc_now() + by  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module, original in zip(modules, saved, strict=True):
            module.utc_now = original  # type: ignore[attr-defined]


def _sqs_record(message: dict[str, Any], url: str) -> dict[str, Any]:
    name = url.rsplit("/", 1)[1]
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {},
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{name}",
        "awsRegion": "us-east-1",
    }
