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
4. Maximum concurrency: CloudFormation keeps an event source mapping's ScalingConfig as the template
   resolves it, and a parameter's value is text ("2"), which MiniStack's poller compares with its
   count of batches in flight and fails on: the queue is never read. It is given again as the
   integer CloudFormation makes of it on AWS.
"""

from __future__ import annotations

import json
import re
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
    concurrency_as_text: dict[str, Any] = field(default_factory=dict)  # mapping logical id -> as found


def bridge(emulator: Emulator, processed: dict[str, Any], resources: dict[str, str]) -> Observations:
    observations = Observations()
    create_routes_from_openapi_body(emulator, processed, resources, observations)
    stop_ttl_deletions(emulator, processed, resources, observations)
    age_out_failing_records(emulator, processed, resources, observations)
    integer_maximum_concurrency(emulator, processed, resources, observations)
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


def integer_maximum_concurrency(
    emulator: Emulator, processed: dict[str, Any], resources: dict[str, str], observations: Observations
) -> None:
    lambdas = emulator.client("lambda")
    answers: list[dict[str, Any]] = []  # as sent: botocore makes a text number an integer
    lambdas.meta.events.register(
        "before-parse.lambda.GetEventSourceMapping",
        lambda response_dict, **_: answers.append(json.loads(response_dict["body"] or b"{}")),
    )
    for logical_id, resource in processed["Resources"].items():
        if resource["Type"] != "AWS::Lambda::EventSourceMapping":
            continue
        if "ScalingConfig" not in resource["Properties"]:
            continue
        mapping = resources[logical_id]
        lambdas.get_event_source_mapping(UUID=mapping)
        found = answers[-1]["ScalingConfig"]["MaximumConcurrency"]
        if isinstance(found, int):
            continue  # the emulator made it an integer: nothing to bridge
        observations.concurrency_as_text[logical_id] = found
        lambdas.update_event_source_mapping(UUID=mapping, ScalingConfig={"MaximumConcurrency": int(found)})
