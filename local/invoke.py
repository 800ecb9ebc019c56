"""Invokes one function of a running local runtime, e.g. a scheduled one on demand.

.venv/bin/python -m local.invoke MonthlyReportFunction
.venv/bin/python -m local.invoke CleanupMembersFunction --event events/stream_cleanup_members.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.invoke", description=__doc__.split("\n")[0])
    parser.add_argument("function", help="logical id in template.yaml, e.g. MonthlyReportFunction")
    parser.add_argument("--event", type=Path, help="JSON event file (default: the scheduled event)")
    default_url = f"http://127.0.0.1:{os.environ.get('LOCAL_PORT', '3000')}"
    parser.add_argument("--url", default=default_url, help=f"the runtime (default {default_url})")
    arguments = parser.parse_args(argv)
    body = arguments.event.read_bytes() if arguments.event else b""
    request = urllib.request.Request(
        f"{arguments.url}/_local/invoke/{arguments.function}",
        data=body,
        method="POST",
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=900) as response:
            result = json.loads(response.read())
    except urllib.error.HTTPError as error:
        print(error.read().decode(), file=sys.stderr)
        return 1
    except urllib.error.URLError as error:
        print(
            f"no local runtime at {arguments.url} ({error.reason}); start it with `make run`", file=sys.stderr
        )
        return 1
    print(json.dumps(result, indent=2))
    return 1 if "FunctionError" in result else 0


if __name__ == "__main__":
    sys.exit(main())
