"""`sam build` and `sam deploy` of the working tree into the emulator, as a user deploys into AWS.

The stack is deployed exactly as template.yaml says; what MiniStack 1.5 does not do by itself is then
done by the thin bridges of local/emulator_gaps.py, each listed in docs/local-runtime.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local import emulator_gaps
from local.emulator import PORT, REGION, Emulator

REPO_ROOT = Path(__file__).resolve().parent.parent
SAM = REPO_ROOT / ".venv-sam" / "bin" / "sam"
BUILD_DIR = REPO_ROOT / ".aws-sam" / "build"
STACK_NAME = "segments"
# The SPEC wants the catalog cache off locally; everything else not named here is the template's default.
# The emulator's stack answers at once (no catalog cache) and retries a failed job after a second.
# It applies 4 import chunks at once, not 20: MiniStack serves every call in one process on this
# machine's 2 cores, and 20 workers writing flat out leave the API's functions past their 10 s.
# Expiries end within a second, as the SPEC wants locally.
PARAMETERS = {
    "CatalogCacheSeconds": "0",
    "LogLevel": "INFO",
    "JobRetrySeconds": "1",
    "ImportWorkers": "4",
    "ExpirySweepSeconds": "1",
    # All-users months are fanned out at once, over two workers (eight slices), so the deployed tier
    # runs the fan-out with a few rows.
    "ReportWorkers": "2",
    "ReportSingleWriterSeconds": "0",
}


class DeployError(Exception):
    """sam build or sam deploy failed; the message holds the end of its output."""


@dataclass
class DeployedStack:
    emulator: Emulator
    name: str
    outputs: dict[str, str]
    resources: dict[str, str]  # logical id -> physical id
    api_id: str
    gaps: emulator_gaps.Observations
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        """The API's address, shaped like AWS's https://{apiId}.execute-api.{region}.amazonaws.com."""
        return f"https://{self.api_id}.execute-api.localhost:{PORT}"

    def function_name(self, logical_id: str) -> str:
        return self.resources[logical_id]

    def client(self, service: str, **config: Any) -> Any:
        return self.emulator.client(service, **config)


def sam_environment(emulator: Emulator) -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    # sam build runs functions/Makefile, which needs python3.12 (found through pyenv or PATH).
    return environment | emulator.client_environment() | {"SAM_CLI_TELEMETRY": "0"}


def run_sam(arguments: list[str], environment: dict[str, str], log_path: Path) -> float:
    if not SAM.exists():
        raise DeployError(f"{SAM} is missing: run `make sam-venv`")
    started = time.perf_counter()
    with log_path.open("ab") as log_file:
        completed = subprocess.run(
            [str(SAM), *arguments],
            cwd=REPO_ROOT,
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    if completed.returncode != 0:
        tail = log_path.read_text(errors="replace")[-6000:]
        raise DeployError(f"sam {arguments[0]} failed ({completed.returncode}); see {log_path}:\n{tail}")
    return time.perf_counter() - started


def source_digest() -> str:
    """A digest of everything `sam build` reads: the template, samconfig.toml and functions/."""
    digest = hashlib.sha256()
    files = [REPO_ROOT / "template.yaml", REPO_ROOT / "samconfig.toml"]
    files += sorted(path for path in (REPO_ROOT / "functions").rglob("*") if path.is_file())
    for path in files:
        if "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def build(emulator: Emulator, log_path: Path) -> float:
    """sam build, unless .aws-sam/build already holds the build of exactly this source.

    sam's own cache keeps the layer, but rebuilds every function of a makefile build each time (it
    looks for a dependency folder such builds do not have): ~30 s here for nothing changed.
    """
    stamp = BUILD_DIR / ".segments-source-digest"
    digest = source_digest()
    if (BUILD_DIR / "template.yaml").exists() and stamp.exists() and stamp.read_text() == digest:
        return 0.0
    stamp.unlink(missing_ok=True)
    seconds = run_sam(["build", "--cached", "--parallel"], sam_environment(emulator), log_path)
    stamp.write_text(digest)
    return seconds


def deploy(emulator: Emulator, log_path: Path) -> DeployedStack:
    """sam deploy of the built stack, then the emulator's gaps bridged; the stack as a client sees it."""
    overrides = " ".join(f"{name}={value}" for name, value in PARAMETERS.items())
    seconds = run_sam(
        [
            "deploy", "--stack-name", STACK_NAME, "--region", REGION, "--resolve-s3",
            "--capabilities", "CAPABILITY_IAM", "--no-confirm-changeset", "--no-fail-on-empty-changeset",
            "--parameter-overrides", overrides,
        ],
        sam_environment(emulator),
        log_path,
    )  # fmt: skip
    cloudformation = emulator.client("cloudformation")
    (description,) = cloudformation.describe_stacks(StackName=STACK_NAME)["Stacks"]
    outputs = {output["OutputKey"]: output["OutputValue"] for output in description.get("Outputs", [])}
    resources = {
        resource["LogicalResourceId"]: resource["PhysicalResourceId"]
        for resource in cloudformation.describe_stack_resources(StackName=STACK_NAME)["StackResources"]
    }
    processed = processed_template(emulator)
    started = time.perf_counter()
    gaps = emulator_gaps.bridge(emulator, processed, resources)
    stack = DeployedStack(emulator, STACK_NAME, outputs, resources, resources["Api"], gaps)
    stack.seconds = {"deploy": seconds, "bridges": time.perf_counter() - started}
    return stack


def processed_template(emulator: Emulator) -> dict[str, Any]:
    """The template after the SAM transform, as CloudFormation deployed it."""
    body = emulator.client("cloudformation").get_template(StackName=STACK_NAME, TemplateStage="Processed")[
        "TemplateBody"
    ]
    return json.loads(body) if isinstance(body, str) else dict(body)
