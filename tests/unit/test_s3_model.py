"""The report functions' trimmed S3 model is botocore's own, cut to the operations they call."""

from typing import Any

import botocore.session
from botocore.config import Config

from dal.report_storage import s3_client
from tests.support.s3_model import MODEL, OPERATIONS, render, trimmed_model


def wire(shape: Any) -> dict[str, Any]:
    """What a shape puts on or reads off the wire, member by member."""
    if shape is None:
        return {}
    return {name: (member.type_name, member.serialization) for name, member in shape.members.items()}


def test_the_shipped_model_is_the_pinned_botocore_s_cut_to_the_operations_used() -> None:
    # If botocore moves, regenerate: .venv/bin/python -m tests.support.s3_model
    assert MODEL.read_text(encoding="utf-8") == render(trimmed_model())


def test_the_report_client_knows_exactly_those_operations_and_signs_like_the_full_one(aws: None) -> None:
    session = botocore.session.get_session()
    client = s3_client(session)
    assert sorted(client.meta.service_model.operation_names) == sorted(OPERATIONS)
    full = botocore.session.get_session().create_client(
        "s3", region_name=client.meta.region_name, config=Config(signature_version="s3v4")
    )
    for operation in OPERATIONS:
        mine = client.meta.service_model.operation_model(operation)
        theirs = full.meta.service_model.operation_model(operation)
        assert mine.http == theirs.http and wire(mine.input_shape) == wire(theirs.input_shape), operation
        assert wire(mine.output_shape) == wire(theirs.output_shape), operation
    params = {"Bucket": "b", "Key": "reports/monthly/2023-08.csv"}
    mine_url = client.generate_presigned_url("get_object", Params=params, ExpiresIn=60)
    theirs_url = full.generate_presigned_url("get_object", Params=params, ExpiresIn=60)
    assert mine_url.split("X-Amz-Date")[0] == theirs_url.split("X-Amz-Date")[0]
