"""Regenerate functions/dal/botocore_data: the S3 operations the report functions call, and nothing else.

    .venv/bin/python -m tests.support.s3_model

botocore's S3 model describes 116 operations in 1.3 MB of JSON; parsing it was half of the S3 client's
~30 ms at every report function's cold start. The trimmed model is cut from the botocore that
functions/requirements.txt pins, and tests/unit/test_s3_model.py fails when the two drift apart.
"""

import json
from pathlib import Path
from typing import Any

import botocore
from botocore.loaders import Loader

# Every S3 operation dal/report_storage.py calls or presigns.
OPERATIONS = (
    "AbortMultipartUpload",
    "CompleteMultipartUpload",
    "CreateMultipartUpload",
    "GetObject",
    "GetObjectTagging",
    "PutObject",
    "PutObjectTagging",
    "UploadPart",
)
DATA = Path(__file__).resolve().parents[2] / "functions" / "dal" / "botocore_data"
MODEL = DATA / "s3" / "2006-03-01" / "service-2.json"


def trimmed_model() -> dict[str, Any]:
    full = Loader().load_service_model("s3", "service-2")
    shapes: dict[str, Any] = full["shapes"]
    kept: set[str] = set()

    def keep(name: str) -> None:
        if name in kept:
            return
        kept.add(name)
        shape = shapes[name]
        for member in shape.get("members", {}).values():
            keep(member["shape"])
        for part in ("member", "key", "value"):
            if part in shape:
                keep(shape[part]["shape"])

    operations = {name: full["operations"][name] for name in OPERATIONS}
    for operation in operations.values():
        for part in ("input", "output"):
            if part in operation:
                keep(operation[part]["shape"])
        for error in operation.get("errors", []):
            keep(error["shape"])
    model = {**full, "operations": operations, "shapes": {name: shapes[name] for name in sorted(kept)}}
    model["metadata"] = {**model["metadata"], "trimmedFrom": f"botocore {botocore.__version__}"}
    return _without_documentation(model)


def _without_documentation(value: Any) -> Any:
    if isinstance(value, dict):
        # Emptied, not dropped: botocore reads some of these keys.
        return {
            key: "" if key == "documentation" else _without_documentation(item) for key, item in value.items()
        }
    if isinstance(value, list):
        return [_without_documentation(item) for item in value]
    return value


def render(model: dict[str, Any]) -> str:
    return json.dumps(model, indent=None, separators=(",", ":"), sort_keys=True) + "\n"


if __name__ == "__main__":
    MODEL.parent.mkdir(parents=True, exist_ok=True)
    MODEL.write_text(render(trimmed_model()), encoding="utf-8")
    print(f"{MODEL}: {MODEL.stat().st_size} bytes, {len(OPERATIONS)} operations")
