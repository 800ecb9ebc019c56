"""`make run`: the stack as deployed, on this machine. MiniStack is started, the working tree is built
with `sam build` and deployed with `sam deploy` into it, and it serves until Ctrl-C, which stops it all.

python -m local.run [--state-dir .local-emulator]

It starts empty every time. `source .local-emulator/env.sh` in another shell gives $API, $SIGN and
$CACERT for curl, and the AWS_* settings for the AWS CLI and SDKs.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from local import emulator, stack

REPO_ROOT = Path(__file__).resolve().parent.parent


def environment_script(deployed: stack.DeployedStack) -> str:
    certificate = deployed.emulator.certificate
    region = emulator.REGION
    lines = [
        f"export API={deployed.api_url}",
        f"export CACERT='--cacert {certificate}'",
        f"export SIGN='--cacert {certificate} --aws-sigv4 aws:amz:{region}:execute-api --user test:test'",
        *(f"export {name}={value}" for name, value in deployed.emulator.client_environment().items()),
    ]
    return "\n".join(lines) + "\n"


def banner(deployed: stack.DeployedStack, script: Path, seconds: float) -> str:
    parts = ", ".join(f"{name} {value:.1f} s" for name, value in deployed.seconds.items())
    return f"""
segments is deployed on MiniStack (IAM enforced, TLS) in {seconds:.0f} s ({parts})
  API: {deployed.api_url}   every call must be SigV4-signed (execute-api, {emulator.REGION})
  AWS: {emulator.ENDPOINT_URL}   credentials test/test; certificate {deployed.emulator.certificate}
  emulator log: {deployed.emulator.log_path}

In another shell:
  source {script}
  curl -s $SIGN -X POST $API/segments -H 'content-type: application/json' \\
    -d '{{"slug": "AVITO_VOICE_MESSAGES"}}'
  curl -s $SIGN -X POST $API/users/1000/segments -H 'content-type: application/json' \\
    -d '{{"add": ["AVITO_VOICE_MESSAGES"]}}'
  curl -s $SIGN $API/users/1000/segments

Ctrl-C stops the emulator and discards everything in it.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.run", description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".local-emulator")
    arguments = parser.parse_args(argv)
    state = arguments.state_dir.resolve()
    started = time.perf_counter()
    try:
        emulator.ensure_ports_free()
        shutil.rmtree(state / "tmp", ignore_errors=True)  # the last run's Lambda workers' files
        running = emulator.start(state)
    except emulator.EmulatorError as error:
        print(f"make run: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        emulator_seconds = time.perf_counter() - started
        print(f"MiniStack is up ({emulator_seconds:.1f} s); sam build and sam deploy...", flush=True)
        build_seconds = stack.build(running, state / "sam.log")
        deployed = stack.deploy(running, state / "sam.log")
        deployed.seconds = {"emulator": emulator_seconds, "sam build": build_seconds} | deployed.seconds
        script = state / "env.sh"
        script.write_text(environment_script(deployed))
        print(banner(deployed, script, time.perf_counter() - started), flush=True)
        while not stop.wait(0.5):  # a timed wait keeps the main thread responsive to signals
            if not running.running():
                print(f"MiniStack stopped by itself; see {running.log_path}", file=sys.stderr)
                return 1
        print("stopping...", flush=True)
        return 0
    except stack.DeployError as error:
        if stop.is_set():  # Ctrl-C during the build or the deploy interrupts sam too
            print("stopped", flush=True)
            return 0
        print(f"make run: {error}", file=sys.stderr)
        return 1
    finally:
        running.stop()


if __name__ == "__main__":
    sys.exit(main())
