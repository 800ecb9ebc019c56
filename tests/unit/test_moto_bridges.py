"""tests/support/atomic_moto.py bridges three things moto does unlike DynamoDB. Each test here reads
moto as it ships (a fresh process, the bridge not installed) and passes while moto still does that
thing; once it does not, the test fails and names the part of the bridge to drop.
"""

import json
import subprocess
import sys
from functools import cache
from typing import Any

# Runs without the bridge: moto's own code, read as text (white space folded).
FACTS = """
import inspect, json
from moto.core.responses import BaseResponse
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler, DynamoResult

def source(function):
    return "".join(inspect.getsource(function).split())

print(json.dumps({
    "locks": [name for name, function in (("DynamoHandler", DynamoHandler.call_action),
              ("BaseResponse", BaseResponse.call_action)) if "lock" in source(function).lower()],
    "copies_tables": "copy.deepcopy(self.tables[table_name])" in source(DynamoDBBackend.transact_write_items),
    "own_serialiser": "execute_result" in vars(DynamoResult),
    "query_sorts_table": "foriteminself.all_items()" in source(Table.query)
    and "returnsorted(" in source(Table.all_items),
}))
"""


@cache
def moto_as_shipped() -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", FACTS], capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))


def test_moto_still_serves_dynamodb_requests_without_a_lock() -> None:
    assert moto_as_shipped()["locks"] == [], (
        "moto now serialises DynamoDB requests itself: drop the lock of make_dynamodb_requests_atomic"
    )


def test_moto_still_copies_every_table_a_transaction_names() -> None:
    assert moto_as_shipped()["copies_tables"], (
        "moto's TransactWriteItems no longer deep-copies whole tables: "
        "drop roll_back_transactions_item_by_item"
    )


def test_moto_still_answers_dynamodb_through_its_generic_serialiser() -> None:
    assert not moto_as_shipped()["own_serialiser"], (
        "moto's DynamoResult has a serialiser of its own now: drop serialise_dynamodb_results_directly "
        "if it is as fast as a plain JSON dump"
    )


def test_moto_still_sorts_the_whole_table_for_every_query() -> None:
    assert moto_as_shipped()["query_sorts_table"], (
        "moto's Query no longer sorts every item of the table first: drop query_without_sorting_the_table"
    )
