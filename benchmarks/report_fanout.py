"""Figure 7: a fanned-out all-users report. One slice worker's rows/s and peak memory, measured (a fresh
process per run, benchmarks.report_slice_worker), and the wall time of a month of 100 million rows
with the configured workers, projected from them and from DynamoDB's and S3's own limits.

The projection (docs/performance.md, the method):
- slices: the template's ReportWorkers x SLICES_PER_WORKER, each 1e8 / slices rows; a worker writes a
  slice at the measured rate times its share of a vCPU (Lambda gives 1,769 MB a full one, the worker
  has the template's MemorySize), then uploads its bytes at S3_MB_S; the workers take the slices in
  rounds of ReportWorkers;
- DynamoDB: every row is read once from the month index, whose HistoryShards partitions give 3,000
  read units a second each; an eventually consistent Query reads 4 KB per half unit of the items'
  stored size (measured on the service's own items), page by page; the slices cannot beat that;
- compose: S3 copies the slices' objects into the report (UploadPartCopy), COMPOSE_THREADS at once,
  each at S3_MB_S (an assumption: AWS publishes no copy rate; one connection's upload rate is used);
- start: the schedule or request to its job, the plan and the slices' messages, and cold workers.
"""

import json
import math
import os
import subprocess
import sys
from typing import Any, NamedTuple

from benchmarks.cold_start import SeededServer
from benchmarks.harness import ENVIRONMENT, FUNCTIONS, ROOT, Figure

ROWS = 100_000_000
VCPU_MB = 1769  # Lambda: the memory size that has one full vCPU
S3_MB_S = 50.0  # one connection to S3, upload or server-side copy (assumed, conservative)
READ_UNITS_A_PARTITION = 3_000  # a second
QUERY_BYTES_A_HALF_UNIT = 4_096  # eventually consistent
START_S = 5.0  # request → job → plan → slices' messages → cold workers (~1 s each, in parallel)


class Projection(NamedTuple):
    total_s: float
    slicing_s: float
    dynamodb_s: float
    compose_s: float
    workers: int
    slices: int
    worker_rate: float  # rows/s on Lambda


def run_slice_worker(rows: int, server_url: str) -> dict[str, float]:
    environment = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "POWERTOOLS_"))},
        **ENVIRONMENT,
        "AWS_ENDPOINT_URL": server_url,
        "AWS_S3_ADDRESSING_STYLE": "path",
        "PYTHONPATH": os.pathsep.join([str(FUNCTIONS), str(ROOT)]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.report_slice_worker", str(rows)],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"slice worker failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def configured() -> tuple[int, int, int]:
    """ReportWorkers, HistoryShards and the report worker's MemorySize, as template.yaml deploys them."""
    from tests.support.table import load_yaml_template

    template = load_yaml_template()
    parameters = template["Parameters"]
    worker = template["Resources"]["ReportWorkerFunction"]["Properties"]
    memory = worker.get("MemorySize", template["Globals"]["Function"]["MemorySize"])
    workers, shards = parameters["ReportWorkers"]["Default"], parameters["HistoryShards"]["Default"]
    return int(workers), int(shards), int(memory)


def project(rate: float, item_bytes: float, csv_bytes: float, rows: int = ROWS) -> Projection:
    from dal.history_store import PAGE_ITEMS
    from dal.report_storage import COMPOSE_THREADS
    from logic.report_fanout import SLICES_PER_WORKER

    workers, shards, memory = configured()
    slices = workers * SLICES_PER_WORKER
    worker_rate = rate * min(1.0, memory / VCPU_MB)
    slice_rows = rows / slices
    slice_s = slice_rows / worker_rate + slice_rows * csv_bytes / (S3_MB_S * 1e6)
    slicing_s = math.ceil(slices / workers) * slice_s
    page_units = math.ceil(PAGE_ITEMS * item_bytes / QUERY_BYTES_A_HALF_UNIT) * 0.5
    read_units = math.ceil(rows / PAGE_ITEMS) * page_units
    dynamodb_s = read_units / (shards * READ_UNITS_A_PARTITION)
    compose_s = rows * csv_bytes / (COMPOSE_THREADS * S3_MB_S * 1e6) + 1.0  # + create, complete, tag
    total_s = START_S + max(slicing_s, dynamodb_s) + compose_s
    return Projection(total_s, slicing_s, dynamodb_s, compose_s, workers, slices, worker_rate)


def measure(rows: int) -> list[Figure]:
    with SeededServer([]) as server:
        server.reset(set())
        run: dict[str, Any] = run_slice_worker(rows, server.url)
    busy = run["cpu_seconds"] - run["server_seconds"]
    rate = run["rows"] / busy
    csv_bytes = run["bytes"] / run["rows"]
    projected = project(rate, run["item_bytes"], csv_bytes)
    _, shards, memory = configured()
    return [
        Figure(
            "report_rows_per_s_per_worker",
            rate,
            "rows/s",
            None,
            "reported",
            f"one slice of {run['rows']:,} rows: {shards} shards' Queries ({run['queries']:,}) parsed by "
            f"botocore, merged, CSV to S3: {busy:.1f} s of CPU here ({run['seconds']:.1f} s wall; "
            f"the synthetic index's {run['server_seconds']:.1f} s left out)",
        ),
        Figure(
            "report_worker_peak_mib",
            run["peak_kb"] / 1024,
            "MiB",
            None,
            f"< {memory} (MemorySize)",
            f"peak RSS of that worker's process ({shards} shards, two pages of each held)",
        ),
        Figure(
            "report_projected_s_1e8",
            projected.total_s,
            "s",
            projected.dynamodb_s,
            "<= 300",
            f"{ROWS:,} rows, {projected.workers} workers, {projected.slices} slices: "
            f"{projected.slicing_s:.0f} s of slices at {projected.worker_rate:,.0f} rows/s a worker "
            f"({memory} MB of {VCPU_MB}), S3 {S3_MB_S:.0f} MB/s; compose {projected.compose_s:.0f} s; "
            f"start {START_S:.0f} s; floor: DynamoDB's reads ({run['item_bytes']:.0f} B items, "
            f"{shards} partitions x {READ_UNITS_A_PARTITION:,} units/s)",
        ),
    ]


if __name__ == "__main__":  # python -m benchmarks.report_fanout [ROWS]: these figures alone
    from benchmarks.run import table

    print(table(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)))
