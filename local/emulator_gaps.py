"""Where MiniStack 1.5 falls short of AWS for this stack, bridged after `sam deploy`, outside the product.

Each bridge is a few calls of the emulator's public AWS API on the deployed stack; template.yaml and
functions/ never change for the emulator. tests/e2e/test_emulator_gaps.py holds, for each, a test
that fails once MiniStack no longer needs it (docs/local-runtime.md lists them).

1. Routes: an HTTP API's routes are not created from the OpenAPI body the SAM transform emits
   (AWS::ApiGatewayV2::Api Body), so the API deploys with none. They are created from the processed
   template, one integration and one route per operation, with the operation's authorization.
2. TTL: MiniStack's reaper deletes expired items without a stream record, where DynamoDB writes a
   REMOVE by the service principal that the history turns into a `ttl_expired` row; the row would be
   lost. So TTL stays off on the emulator's table (MiniStack 1.5's CloudFormation leaves it off; this
   turns it off should a later one turn it on): the service never trusts TTL for reads and reports
   the expiries DynamoDB has not deleted yet, so reads and history stay as the contract says.
3. Stream retries: a DynamoDB event source mapping retries a failing batch every second for ever,
   ignoring MaximumRetryAttempts, so a record that keeps failing never reaches its OnFailure queue
   and blocks its shard. MiniStack does honour MaximumRecordAgeInSeconds: 60 s (AWS's least value)
   on each mapping with an OnFailure destination sends such a record there, a minute after it was
   written.
4. SQS scaling: CloudFormation stores an event source mapping's ScalingConfig as the template gives
   it, a parameter's value as text (AWS's CloudFormation passes it as a number), and the SQS poller
   then fails on every poll comparing it with a count: no SQS-triggered function runs at all. The
   mapping's ScalingConfig is set again through the Lambda API, which stores a number.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from local.emulator import Emulator

FAILED_RECORD_AGE_S = 60
# ${Function.Arn}, or ${FunctionAliaslive}: an AutoPublishAlias alias (SnapStart), its ARN its physical id
_FUNCTION_IN_URI = re.compile(r"\$\{(\w+?)(?:\.Arn)?\}")


@dataclass
class Observations:
    """What the emulator did by itself, seen before each bridge acted."""

    routes_from_body: int = 0
    routes_bridged: list[str] = field(default_factory=list)
    ttl_status_after_deploy: str = ""
    aged_mappings: dict[str, str] = field(default_factory=dict)  # function logical id -> mapping UUID
    sqs_poller_errors: int = 0  # the emulator's SQS poller failures before the scaling bridge
    scaled_mappings: list[str] = field(default_factory=list)


def bridge(emulator: Emulator, processed: dict[str, Any], resources: dict[str, str]) -> Observations:
    observations = Observations()
    create_routes_from_openapi_body(emulator, processed, resources, observations)
    stop_ttl_deletions(emulator, processed, resources, observations)
    age_out_failing_records(emulator, processed, resources, observations)
    set_scaling_as_numbers(emulator, processed, resources, observations)
    return observations


def create_routes_from_openapi_body(
    emulator: Emulator, processed: dict[str, Any], resources: dict[str, str], observations: Observations
) -> None:
    apis = emulator.client("apigatewayv2")
    lambdas = emulator.client("lambda")
    for logical_id, resource in processed["Resources"].items():
        if resource["Type"] != "AWS::ApiGatewayV2::Api" or "Body" not in resource["Properties"]:
            continue
        api_id = resources[logical_id]
        observations.routes_from_body += len(apis.get_routes(ApiId=api_id)["Items"])
        if observations.routes_from_body:
            continue  # the emulator made them: nothing to bridge
        for path, item in resource["Properties"]["Body"]["paths"].items():
            for method, operation in item.items():
                integration = operation["x-amazon-apigateway-integration"]
                function = _FUNCTION_IN_URI.search(integration["uri"]["Fn::Sub"])
                assert function is not None, integration
                target = resources[function.group(1)]
                arn = (
                    target
                    if target.startswith("arn:")
                    else lambdas.get_function(FunctionName=target)["Configuration"]["FunctionArn"]
                )
                created = apis.create_integration(
                    ApiId=api_id,
                    IntegrationType="AWS_PROXY",
                    IntegrationMethod="POST",
                    IntegrationUri=arn,
                    PayloadFormatVersion=integration["payloadFormatVersion"],
                )
                iam = any("AWS_IAM" in requirement for requirement in operation.get("security", []))
                route_key = f"{method.upper()} {path}"
                apis.create_route(
                    ApiId=api_id,
                    RouteKey=route_key,
                    AuthorizationType="AWS_IAM" if iam else "NONE",
                    Target=f"integrations/{created['IntegrationId']}",
                )
                observations.routes_bridged.append(route_key)


def stop_ttl_deletions(
    emulator: Emulator, processed: dict[str, Any], resources: dict[str, str], observations: Observations
) -> None:
    dynamodb = emulator.client("dynamodb")
    for logical_id, resource in processed["Resources"].items():
        ttl = resource["Properties"].get("TimeToLiveSpecification") if "Properties" in resource else None
        if resource["Type"] != "AWS::DynamoDB::Table" or not ttl or not ttl.get("Enabled"):
            continue
        table = resources[logical_id]
        description = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
        observations.ttl_status_after_deploy = description.get("TimeToLiveStatus", "")
        if observations.ttl_status_after_deploy == "DISABLED":
            continue  # MiniStack 1.5's CloudFormation does not apply TimeToLiveSpecification
        dynamodb.update_time_to_live(
            TableName=table,
            TimeToLiveSpecification={"Enabled": False, "AttributeName": ttl["AttributeName"]},
        )


def age_out_failing_records(
    emulator: Emulator, processed: dict[str, Any], resources: dict[str, str], observations: Observations
) -> None:
    lambdas = emulator.client("lambda")
    for logical_id, resource in processed["Resources"].items():
        if resource["Type"] != "AWS::Lambda::EventSourceMapping":
            continue
        properties = resource["Properties"]
        if not properties.get("DestinationConfig", {}).get("OnFailure"):
            continue
        mapping = resources[logical_id]
        lambdas.update_event_source_mapping(UUID=mapping, MaximumRecordAgeInSeconds=FAILED_RECORD_AGE_S)
        function = properties["FunctionName"]["Ref"]
        observations.aged_mappings[function] = mapping


POLLER_ERROR = "ESM SQS poller error"


def set_scaling_as_numbers(
    emulator: Emulator, processed: dict[str, Any], resources: dict[str, str], observations: Observations
) -> None:
    lambdas = emulator.client("lambda")
    mappings = [
        resources[logical_id]
        for logical_id, resource in processed["Resources"].items()
        if resource["Type"] == "AWS::Lambda::EventSourceMapping" and "ScalingConfig" in resource["Properties"]
    ]
    if not mappings:
        return
    # The imports bucket's test event waits in the import queue from the deploy on: the poller meets
    # it within a second or two, and fails on it while the gap is there.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not observations.sqs_poller_errors:
        observations.sqs_poller_errors = emulator.log_path.read_text(errors="replace").count(POLLER_ERROR)
        time.sleep(0.2)
    for mapping in mappings:
        scaling = lambdas.get_event_source_mapping(UUID=mapping)["ScalingConfig"]
        numbers = {name: int(value) for name, value in scaling.items()}
        lambdas.update_event_source_mapping(UUID=mapping, ScalingConfig=numbers)
        observations.scaled_mappings.append(mapping)
