"""MiniStack, the AWS emulator that `make run` and the deployed tests deploy the stack into.

It runs from its own venv (.venv-ministack: it pins its own botocore) with IAM enforced (AUTH=true)
and TLS on (USE_SSL=1), bound to loopback, in a process group of its own so that stopping it also
stops the Lambda workers it spawned. One MiniStack fits on a machine: it needs ports 4566 and 443.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import requests
from botocore.config import Config

from local.certificate import make_certificate

REPO_ROOT = Path(__file__).resolve().parent.parent
MINISTACK_PYTHON = REPO_ROOT / ".venv-ministack" / "bin" / "python"
PORT = 4566
PORTS = (PORT, 443)  # 443: MiniStack also serves there under TLS
ENDPOINT_URL = f"https://localhost:{PORT}"
REGION = "us-east-1"
ACCOUNT_ID = "000000000000"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
# This machine points these at the system bundle; MiniStack gives its Lambda workers a bundle that
# trusts its certificate only when they are unset (its workers inherit its environment).
TRUST_VARIABLES = ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
# Its workers get its environment under their function's: powertools' switches of the caller (the
# tests turn metrics and tracing off in-process) must not reach the deployed functions.
NOT_INHERITED_PREFIXES = ("AWS_", "POWERTOOLS_")
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 10


class EmulatorError(Exception):
    """MiniStack cannot be started here; the message says why and what to do."""


def has_listener(port: int) -> bool:
    """Is something accepting connections on the port? A connect, not a bind, so that sockets left in
    TIME_WAIT by a previous run (which a bind without SO_REUSEADDR trips on) never count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def ensure_ports_free(ports: tuple[int, ...] = PORTS) -> None:
    taken = [port for port in ports if has_listener(port)]
    if taken:
        raise EmulatorError(
            f"port(s) {', '.join(map(str, taken))} already have a listener, and MiniStack needs "
            f"{' and '.join(map(str, ports))}: another MiniStack (or `make run`) is probably running. "
            "Stop it first; `ss -ltnp | grep -E ':4566|:443'` shows who holds them."
        )


@dataclass
class Emulator:
    process: subprocess.Popen[bytes]
    state_dir: Path
    log_path: Path
    certificate: Path

    def client_environment(self) -> dict[str, str]:
        """What an AWS SDK or CLI on the host needs to talk to the emulator."""
        return {
            "AWS_ENDPOINT_URL": ENDPOINT_URL,
            "AWS_CA_BUNDLE": str(self.certificate),
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            **CREDENTIALS,
        }

    def session(self) -> boto3.Session:
        return boto3.Session(
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=REGION,
        )

    def client(self, service: str, **config: Any) -> Any:
        return self.session().client(
            service,
            endpoint_url=ENDPOINT_URL,
            verify=str(self.certificate),
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, **config),
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Stops MiniStack and every Lambda worker it started (one process group)."""
        if self.process.poll() is not None:
            return
        group = os.getpgid(self.process.pid)
        os.killpg(group, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            self.process.wait()
        # Workers outlive a parent that exited on SIGTERM; the group still names them.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)


def start(state_dir: Path) -> Emulator:
    """Start MiniStack with its state (certificate, Lambda workers' files, log) under `state_dir`."""
    if not MINISTACK_PYTHON.exists():
        raise EmulatorError(f"{MINISTACK_PYTHON} is missing: run `make ministack-venv`")
    ensure_ports_free()
    state_dir.mkdir(parents=True, exist_ok=True)
    scratch = state_dir / "tmp"
    scratch.mkdir(exist_ok=True)
    certificate, key = make_certificate(state_dir / "tls")
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in TRUST_VARIABLES and not name.startswith(NOT_INHERITED_PREFIXES)
    }
    environment |= {
        "AUTH": "true",
        "USE_SSL": "1",
        "MINISTACK_SSL_CERT": str(certificate),
        "MINISTACK_SSL_KEY": str(key),
        "BIND_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(PORT),
        "MINISTACK_REGION": REGION,
        "TMPDIR": str(scratch),
        **CREDENTIALS,
    }
    log_path = state_dir / "ministack.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [str(MINISTACK_PYTHON), "-m", "ministack"],
            cwd=state_dir,
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    emulator = Emulator(process, state_dir, log_path, certificate)
    try:
        wait_until_serving(emulator)
    except BaseException:
        emulator.stop()
        raise
    return emulator


def wait_until_serving(emulator: Emulator) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not emulator.running():
            raise EmulatorError(f"MiniStack exited with {emulator.process.returncode}:\n{emulator.log()}")
        try:
            answer = requests.get(
                f"{ENDPOINT_URL}/_ministack/health", verify=str(emulator.certificate), timeout=2
            )
            if answer.ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise EmulatorError(f"MiniStack did not serve within {START_TIMEOUT_S} s:\n{emulator.log()}")
