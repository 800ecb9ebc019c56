"""Reading template.yaml: CloudFormation tags, functions, events and resolved environment."""

from pathlib import Path

import pytest

from local.template import TemplateError, load_stack

REPO_ROOT = Path(__file__).resolve().parents[2]
FAKE = REPO_ROOT / "tests" / "fixtures" / "local_runtime" / "template.yaml"


def test_the_real_template_is_readable() -> None:
    stack = load_stack(REPO_ROOT / "template.yaml", "http://127.0.0.1:3001")
    assert stack.table.properties["KeySchema"][0]["AttributeName"] == "pk"
    assert stack.table.ttl_attribute == "ttl"
    create = stack.function("CreateSegmentFunction")
    assert create.handler == "handlers.api_create_segment.lambda_handler"
    assert create.code_dir == REPO_ROOT / "functions"
    assert create.environment["TABLE_NAME"] == stack.table.name


def test_environment_refs_resolve_to_local_names() -> None:
    stack = load_stack(FAKE, "http://127.0.0.1:3001")
    environment = stack.function("EchoFunction").environment
    assert environment["GREETING"] == "hello"  # a parameter's Default
    assert environment["BUCKET"] == stack.buckets["Bucket"] == "segments-local-bucket"


def test_stream_events_keep_their_delivery_settings() -> None:
    source = load_stack(FAKE, "http://x").function("RecorderFunction").streams[0]
    assert (source.batch_size, source.maximum_retry_attempts, source.bisect_on_error) == (2, 2, True)
    assert source.report_batch_item_failures
    assert source.on_failure_queue == "Failures"
    assert source.filter_patterns == [{"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "THING#"}]}}}}]


def test_schedules_and_http_routes_are_read() -> None:
    stack = load_stack(FAKE, "http://x")
    assert stack.function("MonthlyFunction").schedules[0].expression == "cron(0 3 1 * ? *)"
    assert {route.path for route in stack.function("EchoFunction").routes} == {
        "/items/{id}",
        "/items/special",
        "/echo/{proxy+}",
    }


def test_an_unresolvable_reference_fails_at_start_up(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(FAKE.read_text().replace("GREETING: !Ref Greeting", "GREETING: !Ref Nowhere"))
    (tmp_path / "functions").mkdir()
    with pytest.raises(TemplateError, match="Nowhere"):
        load_stack(template, "http://x")
