"""Lambda's delivery of stream batches: partial failures, retries, bisection, on-failure destination."""

from pathlib import Path
from typing import Any

from local.lambda_host import FunctionError, LambdaHost
from local.stream_batches import BatchDelivery, first_failed_index
from local.template import FunctionSpec, StreamSource

FAKE_CODE = Path(__file__).resolve().parents[1] / "fixtures" / "local_runtime" / "functions"


def source(batch_size: int = 10, retries: int = 2, bisect: bool = False) -> StreamSource:
    return StreamSource(batch_size, retries, bisect, True, [], None, "TRIM_HORIZON")


def records(*sequence_numbers: int, failing: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    made = []
    for number in sequence_numbers:
        image: dict[str, Any] = {"pk": {"S": f"THING#{number}"}}
        if number in failing:
            image["fail"] = {"BOOL": True}
        made.append(
            {"dynamodb": {"SequenceNumber": str(number), "NewImage": image, "ApproximateCreationDateTime": 0}}
        )
    return made


class Recorder:
    def __init__(self, fail_on: set[str] | None = None, crash_on: set[str] | None = None) -> None:
        self.batches: list[list[str]] = []
        self.fail_on = fail_on or set()
        self.crash_on = crash_on or set()

    def __call__(self, event: dict[str, Any]) -> Any:
        numbers = [record["dynamodb"]["SequenceNumber"] for record in event["Records"]]
        self.batches.append(numbers)
        if self.crash_on & set(numbers):
            raise FunctionError("boom")
        return {"batchItemFailures": [{"itemIdentifier": n} for n in numbers if n in self.fail_on]}


def delivery(invoke: Any, stream: StreamSource, failures: list[dict[str, Any]]) -> BatchDelivery:
    return BatchDelivery("F", stream, invoke, failures.append, "arn:stream", "shard-1", retry_delay_s=0)


def test_records_arrive_in_batches_of_the_batch_size() -> None:
    invoke = Recorder()
    delivery(invoke, source(batch_size=2), []).deliver(records(1, 2, 3))
    assert invoke.batches == [["1", "2"], ["3"]]


def test_a_partial_failure_retries_from_the_first_failed_record() -> None:
    # Given a record that fails once
    invoke = Recorder(fail_on={"2"})
    invoke_once = Recorder()

    def flaky(event: dict[str, Any]) -> Any:
        return (invoke if not invoke.batches else invoke_once)(event)

    delivery(flaky, source(), []).deliver(records(1, 2, 3))
    # Then the retry starts at it and includes the records after it
    assert invoke.batches == [["1", "2", "3"]]
    assert invoke_once.batches == [["2", "3"]]


def test_after_the_retries_the_failed_records_go_to_the_on_failure_destination() -> None:
    failures: list[dict[str, Any]] = []
    invoke = Recorder(fail_on={"2"})
    delivery(invoke, source(retries=2), failures).deliver(records(1, 2))
    assert len(invoke.batches) == 3  # the first attempt and two retries
    assert failures[0]["DDBStreamBatchInfo"]["startSequenceNumber"] == "2"
    assert failures[0]["requestContext"]["approximateInvokeCount"] == 3


def test_bisection_isolates_a_crashing_record() -> None:
    failures: list[dict[str, Any]] = []
    invoke = Recorder(crash_on={"3"})
    delivery(invoke, source(retries=3, bisect=True), failures).deliver(records(1, 2, 3, 4))
    assert ["1", "2"] in invoke.batches and ["4"] in invoke.batches
    assert [f["DDBStreamBatchInfo"]["startSequenceNumber"] for f in failures] == ["3"]
    assert failures[0]["DDBStreamBatchInfo"]["batchSize"] == 1


def test_an_unknown_item_identifier_fails_the_whole_batch() -> None:
    assert first_failed_index({"batchItemFailures": [{"itemIdentifier": "nope"}]}, records(1, 2)) == 0
    assert first_failed_index({"batchItemFailures": []}, records(1)) is None
    assert first_failed_index(None, records(1)) is None


def test_a_real_handler_module_reports_its_failed_record() -> None:
    # Given the fake recorder handler, hosted as the runtime hosts functions
    spec = FunctionSpec("RecorderFunction", "fake_handlers.recorder.lambda_handler", FAKE_CODE, 128, 3, {})
    host = LambdaHost([spec])
    failures: list[dict[str, Any]] = []
    # When one record of the batch is marked to fail
    delivery(lambda event: host.invoke("RecorderFunction", event), source(retries=1), failures).deliver(
        records(10, 11, 12, failing=(11,))
    )
    # Then only that record and the ones after it were retried, and it was given up on
    assert failures[0]["DDBStreamBatchInfo"]["startSequenceNumber"] == "11"
    assert failures[0]["DDBStreamBatchInfo"]["endSequenceNumber"] == "12"
