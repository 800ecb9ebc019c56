"""Figure 6: peak memory of the report writer for 1,000,000 history rows against 100,000, and rows/s.

Each report is written by a fresh process (benchmarks.report_worker) to a moto S3 server in this
process, so the uploaded object's bytes are held by the server, not counted in the writer's memory.
"""

import json
import os
import subprocess
import sys

from benchmarks.cold_start import SeededServer
from benchmarks.harness import ENVIRONMENT, FUNCTIONS, ROOT, Figure


def write_report(rows: int, server_url: str) -> dict[str, float]:
    environment = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "POWERTOOLS_"))},
        **ENVIRONMENT,
        "AWS_ENDPOINT_URL": server_url,
        "AWS_S3_ADDRESSING_STYLE": "path",
        "PYTHONPATH": os.pathsep.join([str(FUNCTIONS), str(ROOT)]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.report_worker", str(rows)],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"report worker failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measure(small: int, big: int) -> list[Figure]:
    with SeededServer([]) as server:
        server.reset(set())
        low = write_report(small, server.url)
        server.reset(set())
        high = write_report(big, server.url)
    return [
        Figure(
            "report_memory_ratio",
            high["peak_kb"] / 1024,
            "MiB",
            low["peak_kb"] / 1024,
            "<= 1.2",
            f"peak RSS of the report process, {big:,} rows vs {small:,}",
        ),
        Figure(
            f"report_rows_per_s.{small}",
            small / low["seconds"],
            "rows/s",
            None,
            "reported",
            f"{small:,} rows in {low['seconds']:.1f} s",
        ),
        Figure(
            f"report_rows_per_s.{big}",
            big / high["seconds"],
            "rows/s",
            small / low["seconds"],
            "reported",
            f"{big:,} rows in {high['seconds']:.1f} s; floor: the {small:,}-row rate",
        ),
    ]
