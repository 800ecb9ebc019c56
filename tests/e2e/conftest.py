"""Starts `python -m local.runtime` as a subprocess on free ports and waits until it serves."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30


@dataclass
class RunningRuntime:
    url: str
    aws_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_runtime(tmp: Path, template: Path | None = None) -> RunningRuntime:
    port, aws_port = free_port(), free_port()
    arguments = [
        sys.executable,
        "-m",
        "local.runtime",
        "--port",
        str(port),
        "--aws-port",
        str(aws_port),
        "--data-dir",
        str(tmp / "data"),
    ]
    if template is not None:
        arguments += ["--template", str(template)]
    # The runtime sets its own AWS settings; the unit tests' variables must not leak into it.
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "TABLE_", "REPORTS_", "POWERTOOLS_", "CATALOG_"))
    }
    log_path = tmp / "runtime.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            arguments, cwd=REPO_ROOT, env=environment, stdout=log_file, stderr=subprocess.STDOUT
        )
    runtime = RunningRuntime(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{aws_port}", process, log_path)
    wait_until_serving(runtime)
    return runtime


def wait_until_serving(runtime: RunningRuntime) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if runtime.process.poll() is not None:
            raise RuntimeError(f"the runtime exited with {runtime.process.returncode}:\n{runtime.log()}")
        try:
            requests.get(f"{runtime.url}/_local/health", timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    stop_runtime(runtime)
    raise RuntimeError(f"the runtime did not serve within {START_TIMEOUT_S} s:\n{runtime.log()}")


def stop_runtime(runtime: RunningRuntime) -> None:
    runtime.process.terminate()
    try:
        runtime.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        runtime.process.kill()
        runtime.process.wait()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRuntime]:
    """The real service from template.yaml, empty at the start of each test module."""
    runtime = start_runtime(tmp_path_factory.mktemp("service"))
    yield runtime
    stop_runtime(runtime)


@pytest.fixture(scope="module")
def fake_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRuntime]:
    """The runtime serving tests/fixtures/local_runtime: its own mechanics, without the service."""
    template = REPO_ROOT / "tests" / "fixtures" / "local_runtime" / "template.yaml"
    runtime = start_runtime(tmp_path_factory.mktemp("fake"), template)
    yield runtime
    stop_runtime(runtime)
