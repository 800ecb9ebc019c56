"""`make bench`: every figure of issue 6 in one run, printed as a table and written to results.json.

python -m benchmarks.run            # the full run (about 13 minutes on 2 cores)
python -m benchmarks.run --smoke    # tiny sizes, seconds: the code paths only (tests use it)
"""

import argparse
import contextlib
import io
import json
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks.harness import ROOT, Figure, moto_aws


@dataclass(frozen=True)
class Sizes:
    read_repeats: int
    read_catalog: tuple[int, int, int]  # segments, percentage segments, memberships of the user
    write_slugs: tuple[int, ...]
    cold_repeats: int
    cold_functions: list[str] | None
    delete_members: int
    delete_floor_members: int
    delete_repeats: int
    bucket_users: int
    report_rows: tuple[int, int]
    hot_keys: tuple[int, int]  # users loaded into one segment, users of the mixed workload
    report_slice_rows: int  # one slice of a fanned-out month
    # ids of the generated import file, of the sample through the DynamoDB client, imported on moto
    imports: tuple[int, int, int] = (1_000_000, 5_000, 10_000)


FULL = Sizes(
    2000, (50, 10, 20), (1, 10, 50), 15, None, 10_000, 10, 9, 5_000, (100_000, 1_000_000), (10_000, 1_000),
    1_000_000,
)  # fmt: skip
SMOKE = Sizes(
    3, (6, 2, 3), (1, 3), 1, ["GetUserSegmentsFunction"], 40, 10, 2, 50, (200, 2_000), (40, 30), 2_000,
    (2_000, 200, 60),
)  # fmt: skip


def measure(sizes: Sizes) -> list[Figure]:
    from benchmarks import (
        buckets,
        cold_start,
        cost,
        deletes,
        hot_keys,
        imports,
        read_path,
        report_fanout,
        reports,
        writes,
    )

    figures: list[Figure] = []
    with moto_aws():
        with progress("read path"):
            read, durations = read_path.measure(sizes.read_repeats, *sizes.read_catalog)
        with progress("writes"):
            written, write_durations = writes.measure(sizes.write_slugs)
        with progress("deletes"):
            deleted = deletes.measure(sizes.delete_members, sizes.delete_floor_members, sizes.delete_repeats)
        with progress("cost"):
            priced = cost.measure(
                durations["read_cpu_ms"], write_durations["write_ms.1"], read_path.USER, "BENCH_SEGMENT_00"
            )
        figures += read + written + deleted[0] + priced
    with progress("hot keys"), moto_aws():
        figures += hot_keys.measure(*sizes.hot_keys)[0]
    with progress("reports"):
        figures += reports.measure(*sizes.report_rows)
    with progress("report fan-out"):
        figures += report_fanout.measure(sizes.report_slice_rows)
    with progress("buckets"):
        figures += buckets.measure(sizes.bucket_users)[0]
    with progress("imports"):
        figures += imports.measure(*sizes.imports)
    with progress("cold starts"):
        figures += cold_start.measure(sizes.cold_repeats, sizes.cold_functions)[0]
    return figures


@contextlib.contextmanager
def progress(name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    print(f"  {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)


def table(figures: list[Figure]) -> str:
    lines = [f"{'figure':44} {'value':>12} {'floor':>12} {'ratio':>7}  {'unit':10} {'target':22} note"]
    for figure in figures:
        floor = "" if figure.floor is None else f"{figure.floor:12.4g}"
        ratio = "" if figure.ratio is None else f"{figure.ratio:7.3f}"
        lines.append(
            f"{figure.name:44} {figure.value:12.4g} {floor:>12} {ratio:>7}  {figure.unit:10} "
            f"{figure.target:22} {figure.note}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the code paths, not speed")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results.json")
    parser.add_argument("--read-repeats", type=int, help="calls per side of the read path (default 2,000)")
    arguments = parser.parse_args(argv)
    started = time.perf_counter()
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    with contextlib.redirect_stdout(io.StringIO()):  # the handlers' metric lines
        sizes = SMOKE if arguments.smoke else FULL
        if arguments.read_repeats:
            sizes = replace(sizes, read_repeats=arguments.read_repeats)
        figures = measure(sizes)
    arguments.output.write_text(
        json.dumps({figure.name: figure.as_json() for figure in figures}, indent=2) + "\n", encoding="utf-8"
    )
    print(table(figures))
    print(f"\n{len(figures)} figures in {time.perf_counter() - started:.0f} s; written to {arguments.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
