"""Least privilege, read from template.yaml: what each function may do, the API's auth and the bucket."""

import json
from collections.abc import Iterator
from typing import Any

import pytest

from shared.settings import Settings, SettingsError, get_settings
from tests.support import sam_transform
from tests.support.table import load_yaml_template

TEMPLATE = load_yaml_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
FUNCTIONS = {
    name: resource["Properties"]
    for name, resource in RESOURCES.items()
    if resource["Type"] == "AWS::Serverless::Function"
}
REPORT_FUNCTIONS = {"HistoryReportFunction", "ReportWorkerFunction", "MonthlyReportFunction"}
IMPORT_FUNCTIONS = {
    "CreateImportFunction",
    "ListImportsFunction",
    "GetImportFunction",
    "ImportWorkerFunction",
}
# Each bucket, the prefix its objects live under, the functions that may touch it, and the setting
# that names it to them.
BUCKETS = {
    "ReportsBucket": ("reports/", REPORT_FUNCTIONS, "REPORTS_BUCKET"),
    "ImportsBucket": ("imports/", IMPORT_FUNCTIONS, "IMPORTS_BUCKET"),
}
OBJECT_ACTIONS = {
    "ReportsBucket": {"s3:GetObject", "s3:PutObject", "s3:GetObjectTagging", "s3:PutObjectTagging"}
    | {"s3:AbortMultipartUpload"},
    # an import's upload is deleted when the import ends (and its copy, and the errors' parts)
    "ImportsBucket": {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"},
}
DYNAMO_WRITES = {
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:TransactWriteItems",
}


def statements(function: str) -> Iterator[dict[str, Any]]:
    for policy in FUNCTIONS[function].get("Policies", []):
        assert isinstance(policy, dict) and set(policy) == {"Statement"}, (function, policy)
        yield from policy["Statement"]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def actions_of(function: str) -> set[str]:
    return {action for statement in statements(function) for action in as_list(statement["Action"])}


def http_routes(function: str) -> list[tuple[str, str]]:
    return [
        (event["Properties"]["Method"].upper(), event["Properties"]["Path"])
        for event in FUNCTIONS[function].get("Events", {}).values()
        if event["Type"] == "HttpApi"
    ]


def resource_text(resource: Any) -> str:
    """A Resource as the ARN text it names: `${Table.Arn}/index/gsi1`, `Table.Arn`, or a literal."""
    if isinstance(resource, str):
        return resource
    if "Fn::GetAtt" in resource:
        return ".".join(resource["Fn::GetAtt"])
    if "Fn::Sub" in resource:
        return str(resource["Fn::Sub"])
    if "Ref" in resource:
        return str(resource["Ref"])
    return json.dumps(resource)


def touches_bucket(statement: dict[str, Any], bucket: str) -> bool:
    resources = [resource_text(r) for r in as_list(statement["Resource"])]
    return any(bucket in text for text in resources) or (
        any(action.startswith("s3:") for action in as_list(statement["Action"]))
        and not any(other in text for other in BUCKETS if other != bucket for text in resources)
    )


READ_ONLY = sorted(
    name
    for name in FUNCTIONS
    if http_routes(name) and all(m == "GET" and not p.startswith("/reports") for m, p in http_routes(name))
)


def test_the_read_only_functions_are_the_get_routes() -> None:
    assert READ_ONLY == [
        "GetImportFunction",
        "GetSegmentFunction",
        "GetUserSegmentsFunction",
        "ListImportsFunction",
        "ListSegmentsFunction",
    ]


def test_every_function_has_inline_statements_only_and_no_role_or_managed_policy() -> None:
    for name, properties in FUNCTIONS.items():
        assert "Role" not in properties, name
        assert all(isinstance(policy, dict) for policy in properties.get("Policies", [])), name
        for statement in statements(name):
            assert statement["Effect"] == "Allow", (name, statement)
            assert "NotAction" not in statement and "NotResource" not in statement, name
    assert "Policies" not in TEMPLATE.get("Globals", {}).get("Function", {})


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_no_wildcard_action_or_resource(function: str) -> None:
    for statement in statements(function):
        for action in as_list(statement["Action"]):
            assert "*" not in action, (function, action)
        for resource in as_list(statement["Resource"]):
            text = resource_text(resource)
            assert not isinstance(resource, str), (function, "literal ARN", text)
            # The one prefix wildcard allowed: objects under a bucket's own prefix.
            allowed = {f"${{{bucket}.Arn}}/{prefix}*" for bucket, (prefix, _, _) in BUCKETS.items()}
            assert "*" not in text or text in allowed, (function, text)


@pytest.mark.parametrize("function", READ_ONLY)
def test_read_only_functions_may_only_get_and_query(function: str) -> None:
    reads = {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "s3:GetObject"}
    assert actions_of(function) <= reads, actions_of(function)


@pytest.mark.parametrize("bucket", sorted(BUCKETS))
def test_only_its_own_functions_touch_a_bucket_and_only_under_its_prefix(bucket: str) -> None:
    prefix, allowed, setting = BUCKETS[bucket]
    for name in FUNCTIONS:
        bucket_statements = [statement for statement in statements(name) if touches_bucket(statement, bucket)]
        if name not in allowed:
            assert bucket_statements == [], name
            assert setting not in FUNCTIONS[name].get("Environment", {}).get("Variables", {}), name
            continue
        assert bucket_statements, name
        for statement in bucket_statements:
            resources = [resource_text(r) for r in as_list(statement["Resource"])]
            if resources == [f"{bucket}.Arn"]:
                # The bucket itself: listing only, so that an object not written yet is a 404, not a 403.
                assert statement["Action"] == ["s3:ListBucket"], (name, statement)
                continue
            assert resources == [f"${{{bucket}.Arn}}/{prefix}*"], name
            # Object actions only: no listing, no bucket or ACL changes.
            assert set(statement["Action"]) <= OBJECT_ACTIONS[bucket], (name, statement["Action"])


def test_the_import_worker_writes_only_users_its_import_and_its_chunks() -> None:
    writes = sorted(
        (action, statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"])
        for statement in statements("ImportWorkerFunction")
        for action in as_list(statement["Action"])
        if action in DYNAMO_WRITES
    )
    # a user's change and mark (USER#), the import in its segment's partition, its chunks (IMPORT#)
    assert writes == [
        ("dynamodb:BatchWriteItem", ["IMPORT#*"]),
        ("dynamodb:PutItem", ["USER#*"]),
        ("dynamodb:UpdateItem", ["IMPORT#*"]),
        ("dynamodb:UpdateItem", ["SEGMENT#*"]),
    ]


def test_only_the_cleanup_deletes_users_items_and_segment_writers_only_the_rule_set_entry() -> None:
    deleters = {
        name: statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
        for name in FUNCTIONS
        for statement in statements(name)
        if "dynamodb:DeleteItem" in as_list(statement["Action"])
    }
    assert deleters == {
        "CleanupWorkerFunction": ["USER#*"],  # opt-outs of a deleted generation
        # a segment leaving the rule set (RULESET) when its rule ends or it is deleted
        "UpdateSegmentFunction": ["SEGMENT#*", "GROUP#*", "RULESET"],
        "DeleteSegmentFunction": ["SEGMENT#*", "GROUP#*", "RULESET"],
    }


def test_a_user_update_writes_only_the_users_own_items() -> None:
    writes = [
        statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
        for statement in statements("UpdateUserSegmentsFunction")
        if set(as_list(statement["Action"])) & {*DYNAMO_WRITES, "dynamodb:ConditionCheckItem"}
    ]
    assert writes == [["USER#*"]]


def test_the_cleanup_replaces_members_and_updates_only_segment_items() -> None:
    writes = {
        action: statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
        for statement in statements("CleanupWorkerFunction")
        for action in as_list(statement["Action"])
        if action in DYNAMO_WRITES
    }
    # Tombstones and opt-outs live in the user's partition; progress on the deleted generation.
    assert writes == {
        "dynamodb:PutItem": ["USER#*"],
        "dynamodb:DeleteItem": ["USER#*"],
        "dynamodb:UpdateItem": ["SEGMENT#*"],
    }


def test_the_http_api_requires_iam_auth_by_default() -> None:
    apis = {name: r for name, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::HttpApi"}
    assert set(apis) == {"Api"}
    auth = apis["Api"]["Properties"]["Auth"]
    assert auth["DefaultAuthorizer"] == "AWS_IAM" and auth["EnableIamAuthorizer"] is True
    for name in FUNCTIONS:
        for event in FUNCTIONS[name].get("Events", {}).values():
            if event["Type"] == "HttpApi":
                assert event["Properties"]["ApiId"] == {"Ref": "Api"}, name
                # No route may opt out of the default authorizer (Auth: {Authorizer: NONE}).
                assert "Auth" not in event["Properties"], name


@pytest.mark.parametrize("name", sorted(BUCKETS))
def test_the_buckets_block_public_access_and_encrypt(name: str) -> None:
    bucket = RESOURCES[name]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert "AccessControl" not in bucket and "WebsiteConfiguration" not in bucket


@pytest.mark.parametrize("name", sorted(BUCKETS))
def test_the_buckets_expire_their_objects_after_30_days(name: str) -> None:
    rules = RESOURCES[name]["Properties"]["LifecycleConfiguration"]["Rules"]
    expiring = [rule for rule in rules if rule["Status"] == "Enabled" and rule.get("ExpirationInDays") == 30]
    assert len(expiring) == 1 and expiring[0]["Prefix"] == BUCKETS[name][0]
    assert expiring[0]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}


def test_each_bucket_policy_only_denies_non_tls_access() -> None:
    policies = {
        r["Properties"]["Bucket"]["Ref"]: r
        for r in RESOURCES.values()
        if r["Type"] == "AWS::S3::BucketPolicy"
    }
    assert set(policies) == set(BUCKETS)
    for bucket, policy in policies.items():
        (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
        assert (
            statement["Effect"] == "Deny" and statement["Principal"] == "*" and statement["Action"] == "s3:*"
        )
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert {resource_text(r) for r in statement["Resource"]} == {f"{bucket}.Arn", f"${{{bucket}.Arn}}/*"}


def test_only_s3_of_this_account_may_send_to_the_import_queue() -> None:
    (policy,) = [r for r in RESOURCES.values() if r["Type"] == "AWS::SQS::QueuePolicy"]
    assert policy["Properties"]["Queues"] == [{"Ref": "ImportQueue"}]
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert (
        statement["Principal"] == {"Service": "s3.amazonaws.com"} and statement["Action"] == "sqs:SendMessage"
    )
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_the_table_is_encrypted_and_recoverable() -> None:
    table = RESOURCES["Table"]["Properties"]
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_dead_letter_queues_are_encrypted() -> None:
    for name, resource in RESOURCES.items():
        if resource["Type"] == "AWS::SQS::Queue":
            assert resource["Properties"]["SqsManagedSseEnabled"] is True, name


@pytest.mark.parametrize("seconds", [0, 901, 3600, 604_800])
def test_presigned_links_cannot_outlive_15_minutes(seconds: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRESIGNED_URL_SECONDS", str(seconds))
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError, match="PRESIGNED_URL_SECONDS"):
            get_settings()
    finally:
        get_settings.cache_clear()


def test_presigned_link_lifetime_defaults_to_15_minutes_and_the_template_keeps_it() -> None:
    assert Settings(table_name="segments").presigned_url_seconds == 900
    for name, properties in FUNCTIONS.items():
        variables = properties.get("Environment", {}).get("Variables", {})
        assert int(variables.get("PRESIGNED_URL_SECONDS", 900)) <= 900, name


@pytest.mark.skipif(not sam_transform.available(), reason="make test installs .venv-sam")
def test_the_api_may_invoke_only_each_route_function_s_published_alias() -> None:
    resources = sam_transform.transformed(SnapStart="true")["Resources"]
    aliases = {
        resource["Properties"]["FunctionName"]["Ref"]: logical_id
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::Lambda::Alias"
    }
    assert set(aliases) == {name for name in FUNCTIONS if http_routes(name)}
    (api,) = [resource for resource in resources.values() if resource["Type"] == "AWS::ApiGatewayV2::Api"]
    uris = [
        operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
        for path in api["Properties"]["Body"]["paths"].values()
        for operation in path.values()
    ]
    assert len(uris) == len(aliases) == 11 and all("Aliaslive}/invocations" in uri for uri in uris), uris
    invoked = {
        resource["Properties"]["FunctionName"]["Ref"]
        for resource in resources.values()
        if resource["Type"] == "AWS::Lambda::Permission"
        and resource["Properties"]["Principal"] == "apigateway.amazonaws.com"
    }
    assert invoked == set(aliases.values())


def test_a_fanned_out_report_s_temporary_objects_expire_and_the_worker_may_compose_them() -> None:
    from logic.report_fanout import part_key

    part = part_key("2023-08", "run", 3)
    # Under the prefix the lifecycle rule expires, uploads left incomplete aborted too
    (rule,) = RESOURCES["ReportsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert (
        part.startswith(rule["Prefix"]) and rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1
    )
    # UploadPartCopy reads its source (s3:GetObject) and writes the part (s3:PutObject); nothing deletes
    (objects,) = [
        statement
        for statement in statements("ReportWorkerFunction")
        if [resource_text(r) for r in as_list(statement["Resource"])] == ["${ReportsBucket.Arn}/reports/*"]
    ]
    assert {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"} <= set(objects["Action"])
    deleters = {
        name
        for name in FUNCTIONS
        for statement in statements(name)
        if touches_bucket(statement, "ReportsBucket") and "s3:DeleteObject" in as_list(statement["Action"])
    }
    assert deleters == set()  # nothing deletes a report (only the import worker deletes, its own uploads)


def test_the_report_queue_runs_as_many_workers_as_a_fan_out_is_planned_for() -> None:
    worker = FUNCTIONS["ReportWorkerFunction"]
    (event,) = worker["Events"].values()
    assert event["Properties"]["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "ReportWorkers"}
    assert worker["Environment"]["Variables"]["REPORT_WORKERS"] == {"Ref": "ReportWorkers"}
    assert TEMPLATE["Parameters"]["ReportWorkers"]["MinValue"] == 2  # SQS event sources' least
