"""A fanned-out all-users report as deployed: the monthly schedule's job cuts the month into slices
that the report workers write in parallel on the report queue, a coordinator composes them into the one
CSV, and the API links it. The test stack fans every all-users job out at once over two workers
(local/stack.py), so a month of a few rows takes the whole path: the slices' jobs and items, their
temporary objects, the composed report, the functions' own IAM policies. (S3's part copies of big
slices are tested on moto, tests/integration/test_report_fanout.py: they need 5 MiB a slice.)"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local.stack import DeployedStack
from tests.support.deployed import eventually
from tests.support.signed_http import ApiClient

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("deployed")]

MONTH = "2001-06"  # closed long ago: no other test writes its history
KEY = f"reports/monthly/{MONTH}.csv"
SLICES = 8  # ReportWorkers=2 on the test stack, four slices a worker


def month_rows() -> list[Any]:
    """Rows spread over the month, several of them at the instant of a cut between two slices and a
    microsecond before it: each once in the CSV, in report order."""
    from logic.report_fanout import plan_slices
    from logic.reports import parse_period
    from models.domain import HistoryRow, Operation, Reason

    period = parse_period(MONTH, datetime.now(UTC))
    cuts = [piece.until for piece in plan_slices(period, SLICES) if piece.until is not None]
    rows = [
        HistoryRow(period.start + timedelta(hours=13 * number, microseconds=number), 4300 + number % 7,
                   f"E2E_FAN_{number % 3}", Operation.ADD if number % 4 else Operation.REMOVE, Reason.MANUAL)
        for number in range(40)
    ]  # fmt: skip
    for cut in cuts[::2]:
        rows += [
            HistoryRow(cut, 4310 + user, "E2E_FAN_CUT", Operation.ADD, Reason.IMPORT) for user in range(3)
        ]
        rows.append(
            HistoryRow(cut - timedelta(microseconds=1), 4320, "E2E_FAN_CUT", Operation.ADD, Reason.MANUAL)
        )
    return sorted(rows)


def test_a_fanned_out_month_is_written_by_its_slices_and_the_api_links_the_whole_csv(
    deployed_stack: DeployedStack, api: ApiClient
) -> None:
    from dal.history_store import history_item
    from logic.reports import csv_lines

    dynamodb, table = deployed_stack.client("dynamodb"), deployed_stack.outputs["TableName"]
    # Given a closed month of history in the table, as the stream's reader writes it (64 shards)
    rows = month_rows()
    for row in rows:
        dynamodb.put_item(TableName=table, Item=history_item(row, 64).serialize())
    # When the monthly schedule fires for it (on the 1st of the next month)
    event = {"time": "2001-07-01T01:00:00Z", "detail-type": "Scheduled Event", "source": "aws.events"}
    answer = deployed_stack.client("lambda", read_timeout=60).invoke(
        FunctionName=deployed_stack.function_name("MonthlyReportFunction"), Payload=json.dumps(event).encode()
    )
    assert json.loads(answer["Payload"].read()) == {"period": MONTH, "status": "requested"}
    # Then its job fans it out and is done once its eight slices are written and composed

    def request() -> dict[str, Any]:
        key = {"pk": {"S": f"REPORT#{KEY}"}, "sk": {"S": "REQUEST"}}
        return dict(dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item", {}))

    assert eventually(lambda: request().get("status", {}).get("S") == "done", timeout_s=120, interval_s=2)
    slices = dynamodb.query(
        TableName=table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :slices)",
        ExpressionAttributeValues={":pk": {"S": f"REPORT#{KEY}"}, ":slices": {"S": "SLICE#"}},
        ConsistentRead=True,
    )["Items"]
    assert len(slices) == SLICES and {item["status"]["S"] for item in slices} == {"done"}
    # And the API links it at once, final: the CSV the one writer would have written, every row once
    response = api.get("/reports/history", params={"period": MONTH})
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == len(rows)
    download = api.download(response.json()["url"])
    assert download.status_code == 200
    assert download.content.decode() == "".join(csv_lines(rows))
    assert len(list(csv.DictReader(io.StringIO(download.content.decode()), delimiter=";"))) == len(rows)
    tags = deployed_stack.client("s3").get_object_tagging(
        Bucket=deployed_stack.outputs["ReportsBucketName"], Key=KEY
    )
    assert {tag["Key"]: tag["Value"] for tag in tags["TagSet"]} == {
        "rows": str(len(rows)),
        "complete": "true",
    }
