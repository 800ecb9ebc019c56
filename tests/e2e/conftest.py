"""The deployed tier: the working tree built with `sam build` and deployed with `sam deploy` into
MiniStack (IAM enforced, TLS on), then driven over SigV4-signed HTTPS and the AWS API.

The emulator, the build and the deployment are made once per run, by the worker that runs this
directory (every module here is in the xdist group "deployed"), and stopped at the end. Tests get the
API's address and a signer (`api`), and know nothing of which stack they hit; modules share the
stack, so each names its own segments and users.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local import emulator, stack
from tests.support.signed_http import ApiClient, SigV4

REPO_ROOT = Path(__file__).resolve().parents[2]

# Modules whose tests must run after the others: the contract fuzzer writes anywhere, and the IAM
# check reads every log the run produced. The rest keep their collection order.
LAST = (
    "test_background_jobs",
    "test_emulator_gaps",
    "test_events_invoke",
    "test_api_contract",
    "test_iam_sufficiency",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        module = Path(str(item.fspath)).stem
        return LAST.index(module) + 1 if module in LAST and "e2e" in Path(str(item.fspath)).parts else 0

    items.sort(key=rank)  # stable: the others keep their order


@pytest.fixture(scope="session")
def deployed_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[stack.DeployedStack]:
    """The stack as deployed; fails loudly if the emulator cannot start (e.g. its ports are taken)."""
    state = tmp_path_factory.mktemp("emulator")
    started = time.perf_counter()
    running = emulator.start(state)
    try:
        emulator_seconds = time.perf_counter() - started
        build_seconds = stack.build(running, state / "sam.log")
        deployed = stack.deploy(running, state / "sam.log")
        deployed.seconds |= {"emulator": emulator_seconds, "build": build_seconds}
        (state / "timings.txt").write_text(repr(deployed.seconds))
        yield deployed
    finally:
        running.stop()


@pytest.fixture(scope="session")
def signer() -> SigV4:
    return SigV4(
        emulator.CREDENTIALS["AWS_ACCESS_KEY_ID"],
        emulator.CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        emulator.REGION,
    )


@pytest.fixture(scope="session")
def make_api(deployed_stack: stack.DeployedStack, signer: SigV4) -> Callable[[], ApiClient]:
    """A new client of the API at its address (one per thread), every call signed."""
    return lambda: ApiClient(deployed_stack.api_url, signer, verify=str(deployed_stack.emulator.certificate))


@pytest.fixture(scope="session")
def api(make_api: Callable[[], ApiClient]) -> Iterator[ApiClient]:
    with make_api() as client:
        yield client


POISONED_REPORT_KEY = "reports/users/1/poisoned-by-the-tests.csv"


@pytest.fixture(scope="session", autouse=True)
def poisoned_work(deployed_stack: stack.DeployedStack) -> str:
    """A report request whose period no worker can read, written as soon as the stack is up so that its
    job's five tries run while the other tests do; tests/e2e/test_background_jobs.py finds it in the
    report jobs' dead-letter queue and redrives it."""
    dynamodb, table = deployed_stack.client("dynamodb"), deployed_stack.outputs["TableName"]
    dynamodb.put_item(
        TableName=table,
        Item={
            "pk": {"S": f"REPORT#{POISONED_REPORT_KEY}"},
            "sk": {"S": "REQUEST"},
            "entity": {"S": "REPORT_REQUEST"},
            "key": {"S": POISONED_REPORT_KEY},
            "period": {"S": "not-a-month"},
            "status": {"S": "pending"},
            "requested_at": {"S": "2026-01-01T00:00:00.000000Z"},
            "ttl": {"N": str(int(time.time()) + 3600)},
        },
    )
    return POISONED_REPORT_KEY


@dataclass
class TtlProbe:
    """A table of the tests' own with TTL on and one item that expired at once (see test_emulator_gaps)."""

    table: str
    key: dict[str, dict[str, str]]
    stream_arn: str
    deadline: float  # monotonic: by then the emulator's reaper (a sweep a minute) has run at least once

    def records(self, deployed: stack.DeployedStack) -> list[dict[str, Any]]:
        streams = deployed.client("dynamodbstreams")
        found: list[dict[str, Any]] = []
        for shard in streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]:
            iterator = streams.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            found += streams.get_records(ShardIterator=iterator)["Records"]
        return found


@pytest.fixture(scope="session", autouse=True)
def ttl_probe(deployed_stack: stack.DeployedStack) -> TtlProbe:
    """Made as soon as the stack is up, so that the reaper's minute passes while the other tests run."""
    dynamodb = deployed_stack.client("dynamodb")
    table = "segments-tests-ttl-probe"
    description = dynamodb.create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]
    dynamodb.update_time_to_live(
        TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"}
    )
    key = {"pk": {"S": "expired"}}
    dynamodb.put_item(TableName=table, Item={**key, "ttl": {"N": str(int(time.time()) - 10)}})
    return TtlProbe(table, key, description["LatestStreamArn"], time.monotonic() + 150)
