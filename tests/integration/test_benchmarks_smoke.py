"""`make bench` at tiny sizes, so the benchmark code cannot rot: structure and exact call counts only.

It runs in a process of its own because the benchmarks set their own environment (table, cache).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIGURES = {
    "read_path_ratio",
    "read_path_ratio.replayed_backend",
    "read_path_calls",
    "write_calls.1_slugs",
    "write_calls.3_slugs",
    "delete_ratio",
    "cleanup_members_per_s",
    "cost_per_million_reads",
    "cost_per_million_writes",
    "snapstart_cost_per_month.1_rps",
    "snapstart_cost_per_month.10_rps",
    "snapstart_cost_per_month.100_rps",
    "report_memory_ratio",
    "report_rows_per_s.200",
    "report_rows_per_s.2000",
    "report_rows_per_s_per_worker",
    "report_worker_peak_mib",
    "report_projected_s_1e8",
    "bucket_ns",
    "cold_start_ratio.GetUserSegmentsFunction",
    "cold_start_ratio.GetUserSegmentsFunction.restore",
    "hottest_item_write_share.one_segment",
    "hottest_item_write_share.mixed",
    "hottest_partition_wcu_per_1k_updates.one_segment",
    "hottest_partition_wcu_per_1k_updates.mixed",
    "import_rows_per_s_per_worker",
    "import_plan_lines_per_s",
    "import_worker_peak_mib",
    "import_planner_peak_mib",
    "import_hottest_partition_wcu_per_1k_users",
    "import_table_wcu_per_1k_users",
    "import_projected_s_1e7",
    "import_projected_s_1e7.table_quota",
}


@pytest.mark.xdist_group("benchmarks")
def test_smoke_run_writes_every_figure_with_exact_call_counts(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(output.read_text(encoding="utf-8"))

    assert set(results) == FIGURES
    for name, figure in results.items():
        assert set(figure) == {"value", "unit", "floor", "ratio"}, name
        assert figure["value"] > 0, name
    assert results["read_path_calls"]["value"] == 1
    # A warm update reads its named segments (one consistent BatchGetItem) and the user (one consistent
    # Query), then commits one TransactWriteItems, whatever its size.
    assert results["write_calls.1_slugs"]["value"] == 3
    assert results["write_calls.3_slugs"]["value"] == 3
    assert "read_path_ratio" in done.stdout
    # No segment item takes a write of a user update: the hottest item is a user's own
    assert results["hottest_item_write_share.one_segment"]["value"] <= 2 / 40
