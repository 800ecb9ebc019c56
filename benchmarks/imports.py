"""Issue 15: a bulk import's throughput within DynamoDB's limits, projected to 10,000,000 ids
(docs/performance.md). `python -m benchmarks.imports [--smoke]` prints these figures alone.

- The worker's own rate: a generated file of ids (a shuffled block of consecutive ids) is planned and
  applied chunk by chunk by benchmarks.import_worker in fresh processes (their peak memory is theirs):
  the real chunk path against an in-memory store (the logic's CPU), then a sample through the
  service's DynamoImportStore against a canned DynamoDB on loopback (CannedDynamo: the client's CPU).
  moto would measure moto. The CPU-bound rate is combined with the latency of the calls a worker
  makes, counted per batch of users, at the assumed DynamoDB latencies below.
- The partitions: a real import on moto (API, presigned upload, the S3 event, chunk jobs, the stream's
  reader), metered by benchmarks.call_meter: the hottest partition's write units per 1,000 users, the
  stream's history rows, counters and index entries included, and the consistent reads per partition.
- `import_projected_s_1e7`: 10,000,000 ids at ImportWorkers workers, or at the rate the hottest
  partition reaches its limit with HEADROOM, whichever is lower, plus the planning of the file.
"""

import contextlib
import io
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchmarks.call_meter import Meter
from benchmarks.harness import ENVIRONMENT, FUNCTIONS, ROOT, TABLE, Figure
from benchmarks.import_worker import CREATED, SLUG, TTL_SECONDS
from tests.support.table import load_yaml_template

IDS = 10_000_000
TARGET_S = 600
FIRST_ID = 1_000_000_000  # ten-digit ids: a file of 10,000,000 is ~105 MiB, under the 256 MiB limit
# DynamoDB's limits: a partition (one key value) takes 1,000 write and 3,000 read units a second; the
# target keeps half of that free, as docs/data-model.md sizes the shards. The default on-demand quota of
# a table (and of each index) is 40,000 write units a second, raised on request (Service Quotas).
PARTITION_WCU, PARTITION_RCU, HEADROOM = 1000, 3000, 0.5
TABLE_WRU_QUOTA = 40_000
# Assumed latencies from a Lambda function in the table's region (p50): DynamoDB answers a GetItem,
# BatchGetItem or PutItem in single-digit milliseconds; a TransactWriteItems takes two phases.
READ_MS, PUT_MS, TRANSACT_MS = 5.0, 5.0, 20.0  # a transaction: two phases, up to 50 items (25 users)
S3_GET_MS, S3_MIB_PER_S, SQS_SEND_MS = 30.0, 50.0, 10.0
FULL_VCPU_MB = 1769  # Lambda gives a function one vCPU at 1,769 MB, in proportion below it
# A chunk's own calls besides its users' (logic.imports.run_chunk): the import and the chunk read, the
# chunk's bytes (a ranged S3 GET), the chunk done and counted (a transaction), the import read again.
CHUNK_READS, CHUNK_TRANSACTIONS = 3, 1


def measure(file_ids: int, sample_ids: int, metered_ids: int) -> list[Figure]:
    workers, memory_mb = _configured()
    with tempfile.TemporaryDirectory() as scratch:
        source, plan_path = Path(scratch) / "ids.csv", Path(scratch) / "plan.json"
        source.write_bytes(id_file(generated_ids(file_ids)))
        planned = _worker("plan", str(source), str(plan_path))
        with CannedDynamo() as endpoint:
            applied = _worker("apply", str(source), str(plan_path), str(sample_ids), endpoint=endpoint.url)
    meter, reads = _metered_import(metered_ids)
    return _figures(planned, applied, endpoint, meter, reads, metered_ids, workers, memory_mb)


def generated_ids(count: int) -> list[int]:
    """A block of consecutive ids in a seeded random order: every shard (id % 64) takes its share."""
    ids = list(range(FIRST_ID, FIRST_ID + count))
    random.Random(15).shuffle(ids)
    return ids


def id_file(ids: list[int]) -> bytes:
    return ("user_id\n" + "".join(f"{user_id}\n" for user_id in ids)).encode()


def _configured() -> tuple[int, int]:
    """ImportWorkers' default and the import worker's memory, from template.yaml."""
    template = load_yaml_template()
    worker = template["Resources"]["ImportWorkerFunction"]["Properties"]
    memory = worker.get("MemorySize", template["Globals"]["Function"]["MemorySize"])
    return int(template["Parameters"]["ImportWorkers"]["Default"]), int(memory)


def _worker(*arguments: str, endpoint: str | None = None) -> dict[str, Any]:
    environment = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "POWERTOOLS_"))},
        **ENVIRONMENT,
        "PYTHONPATH": os.pathsep.join([str(FUNCTIONS), str(ROOT)]),
    }
    if endpoint is not None:
        environment["AWS_ENDPOINT_URL"] = endpoint
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.import_worker", *arguments],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"import worker failed: {done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


JSON = "application/x-amz-json-1.0"


class CannedDynamo:
    """A DynamoDB endpoint on loopback that answers at once, as if every user were new: a BatchGetItem
    gets the segment's META item for its key and nothing for any other, every write succeeds. It
    counts the requests and the connections the client opened."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.connections = 0
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "CannedDynamo":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.requests[operation] += 1
        if operation != "BatchGetItem":
            return {}
        found = {
            table: [_segment_item() for key in wanted["Keys"] if key["pk"]["S"] == f"SEGMENT#{SLUG}"]
            for table, wanted in body["RequestItems"].items()
        }
        return {"Responses": found, "UnprocessedKeys": {}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        canned = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # kept alive, as botocore's pool keeps connections
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                with canned.lock:
                    canned.connections += 1

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                operation = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
                answer = json.dumps(canned.answer(operation, body)).encode()
                head = f"HTTP/1.1 200 OK\r\nContent-Type: {JSON}\r\nContent-Length: {len(answer)}\r\n\r\n"
                self.wfile.write(head.encode() + answer)  # one segment: no wait on a delayed ACK

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def _segment_item() -> dict[str, Any]:
    from dal.entities import CATALOG, SegmentItem
    from models.domain import MEMBER_SHARDS
    from shared.clock import to_stored

    item = SegmentItem(
        f"SEGMENT#{SLUG}", SegmentItem.SK, gsi1pk=CATALOG, gsi1sk=SLUG, slug=SLUG, generation=1, revision=1,
        status="active", description="", created_at=to_stored(CREATED), updated_at=to_stored(CREATED),
        member_shards=MEMBER_SHARDS,
    )  # fmt: skip
    return dict(item.serialize())


# --- the partitions, from a metered import on moto --------------------------------------------------


class ReadTally:
    """Read units per partition key of the service's GetItem and BatchGetItem calls: an item under 4 KB
    (all of these) is one unit read consistently, half otherwise, found or not."""

    def __init__(self) -> None:
        self.units: defaultdict[str, float] = defaultdict(float)

    def before_call(self, model: Any, params: Any, **_: Any) -> None:
        if model.name not in ("GetItem", "BatchGetItem"):
            return
        body = json.loads(params.get("body") or b"{}")
        wanted = {"": body} if model.name == "GetItem" else body["RequestItems"]
        for spec in wanted.values():
            for key in spec["Keys"] if "Keys" in spec else [spec["Key"]]:
                self.units[key["pk"]["S"]] += 1.0 if spec.get("ConsistentRead") else 0.5

    @contextmanager
    def listening(self, client: Any) -> Iterator["ReadTally"]:
        client.meta.events.register("before-call.dynamodb", self.before_call, unique_id="import-reads")
        try:
            yield self
        finally:
            client.meta.events.unregister("before-call.dynamodb", unique_id="import-reads")


def _metered_import(users: int, processes: int = 2) -> tuple[Meter, defaultdict[str, float]]:
    """Each process imports its share of the ids into the same segment (generation 1 in each moto): their
    meters add up to one table's that took the whole import."""
    share = -(-users // processes)
    shares = [(first, min(share, users - first)) for first in range(0, users, share)]
    commands = [
        [sys.executable, "-m", "benchmarks.imports", "share", str(first), str(count), str(users)]
        for first, count in shares
    ]
    running = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) for command in commands]
    meter, reads = Meter(TABLE), defaultdict[str, float](float)
    for process in running:
        out, _ = process.communicate()
        assert process.returncode == 0, out
        part = json.loads(out.strip().splitlines()[-1])
        meter.partition_units.update(part["partitions"])
        meter.requests.update(part["requests"])
        for key, units in part["reads"].items():
            reads[key] += units
    return meter, reads


def _import_share(first: int, count: int, total: int) -> dict[str, Any]:
    """One import of ids [first, first + count) of the generated block, as a client makes it, with the
    background run as Lambda would run it, every DynamoDB call of the service metered."""
    import requests

    from benchmarks.call_meter import metering
    from benchmarks.harness import moto_aws
    from tests.support.api import Api
    from tests.support.background import Background
    from tests.support.service_events import service_client

    with moto_aws():
        api = Api()
        assert api.create_segment(SLUG).status == 201
        created = api.create_import(SLUG, mode="add", ttl_seconds=TTL_SECONDS)
        assert created.status == 201, created
        link = created.body["upload"]
        background = Background(TABLE)
        with metering(TABLE, [service_client()]) as meter, ReadTally().listening(service_client()) as reads:
            body = id_file(generated_ids(total)[first : first + count])
            uploaded = requests.put(link["url"], data=body, headers=link["headers"], timeout=60)
            assert uploaded.status_code == 200, uploaded.text
            background.settle()
        job = api.get_import(SLUG, created.body["import_id"]).body
    assert (job["status"], job["applied"]) == ("done", count), job
    return {"partitions": dict(meter.partition_units), "requests": dict(meter.requests), "reads": reads.units}


# --- the model --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerRate:
    cpu: float  # users/s a worker's share of a vCPU allows
    latency: float  # users/s the worker's round trips allow
    logic_us: float  # CPU a user, the chunk path on the in-memory store (this machine)
    path_us: float  # CPU a user, the chunk path through DynamoImportStore and botocore (this machine)
    vcpu: float

    @property
    def rate(self) -> float:
        return min(self.cpu, self.latency)


@dataclass(frozen=True)
class Partitions:
    hottest: str
    wcu_per_1k: float
    read_hottest: str
    rcu_per_1k: float
    by_kind: list[tuple[str, float]]  # the hottest partition of each kind of key, per 1,000 users
    totals_per_1k: dict[str, float]  # write units of the table and of each index, per 1,000 users

    def rates(self) -> dict[str, float]:
        """Users a second at which a partition reaches HEADROOM of its limit."""
        return {
            f"partition {self.hottest}": PARTITION_WCU * HEADROOM / (self.wcu_per_1k / 1000),
            f"reads of {self.read_hottest}": PARTITION_RCU * HEADROOM / (self.rcu_per_1k / 1000),
        }

    def quota_rates(self) -> dict[str, float]:
        """Users a second at which the table, or an index, reaches its default quota."""
        totals = self.totals_per_1k
        return {f"{name} quota": TABLE_WRU_QUOTA / (units / 1000) for name, units in totals.items()}


@dataclass(frozen=True)
class Planning:
    plan_s: float  # plan_file's CPU at the worker's vCPU
    s3_s: float  # the upload copied, then read whole
    chunk_items_s: float  # the chunk items written into the import's own partition
    chunks: int

    @property
    def seconds(self) -> float:
        return self.plan_s + self.s3_s + self.chunk_items_s + SQS_SEND_MS / 1000  # then the first job


def worker_rate(planned: dict[str, Any], applied: dict[str, Any], memory_mb: int) -> WorkerRate:
    logic, client = applied["logic"], applied["client"]
    assert logic["applied"] == logic["users"] == planned["lines"], (logic, planned)
    vcpu = min(1.0, memory_mb / FULL_VCPU_MB)
    path_us = client["cpu_s"] / client["users"] * 1e6
    return WorkerRate(
        cpu=vcpu * 1e6 / path_us,
        latency=logic["users"] / _latency_seconds(applied, planned["chunks"]),
        logic_us=logic["cpu_s"] / logic["users"] * 1e6,
        path_us=path_us,
        vcpu=vcpu,
    )


def _latency_seconds(applied: dict[str, Any], chunks: int) -> float:
    """The DynamoDB round trips of the whole file as the worker makes them: per batch of users one read of
    the segment, the users' BatchGetItems (100 keys each) on the store's readers, then the commits on the
    worker's pool, wave after wave; and each chunk's own calls."""
    seconds = chunks * (CHUNK_READS * READ_MS + CHUNK_TRANSACTIONS * TRANSACT_MS + S3_GET_MS) / 1000
    for keys, transactions, puts, count in applied["batches"]:
        _, reads, waves = _round_trips(keys, transactions + puts, applied["threads"])
        commit_ms = TRANSACT_MS if transactions else PUT_MS
        seconds += count * (READ_MS + reads * READ_MS + waves * commit_ms) / 1000
    return seconds


def partitions(meter: Meter, reads: dict[str, float], users: int) -> Partitions:
    def per_1k(units: float) -> float:
        return units / (users / 1000)

    hottest, units = meter.hottest_partition()
    read_hottest, read_units = max(reads.items(), key=lambda read: read[1])
    kinds: dict[str, int] = {}
    for key, written in meter.partition_units.items():
        index, _, value = key.partition(":")
        kind = f"{index}:{value.split('#', 1)[0]}"
        kinds[kind] = max(kinds.get(kind, 0), written)
    by_kind = sorted(((kind, per_1k(written)) for kind, written in kinds.items()), key=lambda kind: -kind[1])
    totals = {
        index: per_1k(sum(written for key, written in meter.partition_units.items() if key.startswith(index)))
        for index in ("table", "gsi1", "gsi2")
    }
    return Partitions(hottest, per_1k(units), read_hottest, per_1k(read_units), by_kind, totals)


def planning(planned: dict[str, Any], vcpu: float) -> Planning:
    """Planning IDS lines, scaled from the planned file: the worker that takes the start job does it alone."""
    scale = IDS / planned["lines"]
    chunks = math.ceil(planned["chunks"] * scale)
    items_s = max(math.ceil(chunks / 25) * PUT_MS / 1000, chunks / (PARTITION_WCU * HEADROOM))  # 1 unit each
    return Planning(
        plan_s=planned["cpu_s"] * scale / vcpu,
        s3_s=2 * planned["bytes"] * scale / (S3_MIB_PER_S * 2**20),
        chunk_items_s=items_s,
        chunks=chunks,
    )


def _figures(
    planned: dict[str, Any], applied: dict[str, Any], endpoint: CannedDynamo, meter: Meter,
    reads: dict[str, float], metered: int, workers: int, memory_mb: int,
) -> list[Figure]:  # fmt: skip
    worker = worker_rate(planned, applied, memory_mb)
    hot = partitions(meter, reads, metered)
    plan = planning(planned, worker.vcpu)
    rates = {f"{workers} workers": workers * worker.rate, **hot.rates()}
    binding = min(rates, key=rates.__getitem__)
    projected = IDS / rates[binding] + plan.seconds
    quotas = rates | hot.quota_rates()
    quota_binding = min(quotas, key=quotas.__getitem__)
    logic, client = applied["logic"], applied["client"]
    return [
        Figure(
            "import_rows_per_s_per_worker", worker.rate, "users/s", None, "reported",
            f"min(CPU {worker.cpu:,.0f}/s, latency {worker.latency:,.0f}/s). CPU: the chunk path "
            f"{worker.logic_us:.0f} us a user over {logic['users']:,} ids on an in-memory store, "
            f"{worker.path_us:.0f} us through DynamoImportStore and botocore on a canned endpoint "
            f"({client['users']:,} ids; {endpoint.connections} connections for "
            f"{sum(endpoint.requests.values()):,} requests), x {worker.vcpu:.2f} vCPU at {memory_mb} MB. "
            f"Latency, {_batch_calls(applied)}, at {READ_MS:g} ms a read and {TRANSACT_MS:g} ms a "
            "transaction (assumed p50 in-region)",
        ),
        Figure(
            "import_plan_lines_per_s", planned["lines"] / planned["cpu_s"], "lines/s", None, "reported",
            f"plan_file over {planned['lines']:,} lines ({planned['bytes'] / 2**20:.1f} MiB, "
            f"{planned['chunks']} chunks): {planned['cpu_s']:.2f} s CPU, one worker's sequential step",
        ),
        Figure(
            "import_worker_peak_mib", applied["peak_kb"] / 1024, "MiB", applied["floor_kb"] / 1024,
            "reported",
            f"peak RSS of a process applying {logic['users']:,} ids chunk by chunk, then the client sample; "
            f"floor: its RSS with the worker's modules imported; the function has {memory_mb} MB",
        ),
        Figure(
            "import_planner_peak_mib", planned["peak_kb"] / 1024, "MiB", planned["floor_kb"] / 1024,
            "reported", f"peak RSS of a process planning {planned['lines']:,} lines; floor: as the worker's",
        ),
        Figure(
            "import_hottest_partition_wcu_per_1k_users", hot.wcu_per_1k, "WCU", None, "reported",
            f"{metered:,} ids imported on moto, the stream applied; hottest {hot.hottest}; by kind "
            + ", ".join(f"{kind} {units:.1f}" for kind, units in hot.by_kind[:4])
            + f"; reads: {hot.read_hottest} {hot.rcu_per_1k:.1f} RCU",
        ),
        Figure(
            "import_table_wcu_per_1k_users", hot.totals_per_1k["table"], "WCU", None, "reported",
            f"the base table's write units per 1,000 users (gsi1 {hot.totals_per_1k['gsi1']:.0f}, gsi2 "
            f"{hot.totals_per_1k['gsi2']:.0f}); requests {_named(meter.requests)}",
        ),
        Figure(
            "import_projected_s_1e7", projected, "s", None, f"<= {TARGET_S}",
            f"{IDS:,} ids at {rates[binding]:,.0f} users/s, bound by {binding} ("
            + ", ".join(f"{name} {rate:,.0f}/s" for name, rate in rates.items())
            + f", at {HEADROOM:.0%} of a partition's limit) + planning {plan.seconds:.1f} s (plan "
            f"{plan.plan_s:.1f} s CPU, S3 copy and read {plan.s3_s:.1f} s at {S3_MIB_PER_S:g} MiB/s, "
            f"{plan.chunks:,} chunk items {plan.chunk_items_s:.1f} s)",
        ),
        Figure(
            "import_projected_s_1e7.table_quota", IDS / quotas[quota_binding] + plan.seconds, "s", projected,
            "reported",
            f"the same within the default quota of {TABLE_WRU_QUOTA:,} write units/s of a table and of each "
            f"index: bound by {quota_binding}, {quotas[quota_binding]:,.0f} users/s; floor: partitions only",
        ),
    ]  # fmt: skip


def _batch_calls(applied: dict[str, Any]) -> str:
    """The round trips of the worker's most common batch, as _latency_seconds counts them."""
    keys, transactions, puts, _ = max(applied["batches"], key=lambda batch: batch[3])
    gets, reads, waves = _round_trips(keys, transactions + puts, applied["threads"])
    return (
        f"per batch of {keys // 2:,} users: 1 segment read, {reads} wave of {gets} state reads, "
        f"{waves} wave of {transactions} transactions on {applied['threads']} threads"
    )


def _round_trips(keys: int, commits: int, threads: int) -> tuple[int, int, int]:
    """A batch's BatchGetItems (100 keys each), the waves they take on the store's readers, and the
    waves its commits take on the worker's threads."""
    from dal.imports import READ_THREADS
    from dal.repository import BATCH_GET_KEYS

    gets = math.ceil(keys / BATCH_GET_KEYS)
    return gets, math.ceil(gets / READ_THREADS), math.ceil(commits / threads)


def _named(calls: Counter[str]) -> str:
    return " + ".join(f"{count} {name}" for name, count in sorted(calls.items()))


def main(argv: list[str]) -> None:
    """`python -m benchmarks.imports [--smoke]`: these figures alone, at make bench's sizes."""
    from benchmarks.run import FULL, SMOKE, table

    warnings.filterwarnings("ignore", message="No application metrics to publish")
    with contextlib.redirect_stdout(io.StringIO()):  # the handlers' metric lines
        figures = measure(*(SMOKE if "--smoke" in argv else FULL).imports)
    print(table(figures))


if __name__ == "__main__":
    if sys.argv[1:2] == ["share"]:  # one process's share of the metered import
        print(json.dumps(_import_share(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))))
    else:
        main(sys.argv[1:])
