"""Reads template.yaml into what the runtime needs: functions, their events, the table, and env vars.

Intrinsics are resolved to local values; anything the runtime cannot resolve fails at start-up,
because a silently wrong environment variable would be found much later, in a handler.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
STACK_NAME = "segments-local"


class TemplateError(Exception):
    """The template asks for something the local runtime cannot provide."""


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns short-form tags (!Ref X) into their long JSON form ({"Ref": "X"})."""


def _construct_tag(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_yaml(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as stream:
        document = yaml.load(stream, Loader=_CfnLoader)  # a SafeLoader subclass: no arbitrary objects
    if not isinstance(document, dict):
        raise TemplateError(f"{path} is not a CloudFormation template")
    return document


@dataclass(frozen=True)
class HttpRoute:
    method: str  # upper case, or ANY
    path: str  # /segments/{slug}


@dataclass(frozen=True)
class StreamSource:
    batch_size: int
    maximum_retry_attempts: int  # -1 means retry until the record expires, as in AWS
    bisect_on_error: bool
    report_batch_item_failures: bool
    filter_patterns: list[dict[str, Any]]
    on_failure_queue: str | None  # logical id of an AWS::SQS::Queue
    starting_position: str


@dataclass(frozen=True)
class ScheduleSource:
    name: str
    expression: str  # cron(...) or rate(...)
    enabled: bool
    input: str | None  # constant JSON input replacing the scheduled event


@dataclass
class FunctionSpec:
    name: str
    handler: str  # handlers.api_create_segment.lambda_handler
    code_dir: Path
    memory_mb: int
    timeout_s: int
    environment: dict[str, str]
    routes: list[HttpRoute] = field(default_factory=list)
    streams: list[StreamSource] = field(default_factory=list)
    schedules: list[ScheduleSource] = field(default_factory=list)


@dataclass
class TableSpec:
    logical_id: str
    name: str
    properties: dict[str, Any]

    @property
    def ttl_attribute(self) -> str | None:
        ttl = self.properties.get("TimeToLiveSpecification") or {}
        return ttl.get("AttributeName") if ttl.get("Enabled") else None


@dataclass
class Stack:
    tables: list[TableSpec]
    buckets: dict[str, str]  # logical id -> local bucket name
    queues: dict[str, str]  # logical id -> local queue name
    functions: list[FunctionSpec]

    @property
    def table(self) -> TableSpec:
        if len(self.tables) != 1:
            raise TemplateError(f"the local runtime supports exactly one table, found {len(self.tables)}")
        return self.tables[0]

    def function(self, name: str) -> FunctionSpec:
        for function in self.functions:
            if function.name == name:
                return function
        raise KeyError(name)


def local_name(logical_id: str) -> str:
    """Bucket and queue names must be lower case; the stack prefix keeps them recognisable."""
    return f"{STACK_NAME}-{logical_id}".lower()


class Resolver:
    """Resolves intrinsics to the values they have in the local stack."""

    def __init__(self, template: dict[str, Any], endpoint_url: str) -> None:
        self.parameters = template.get("Parameters") or {}
        self.resources = template.get("Resources") or {}
        self.endpoint_url = endpoint_url

    def resolve(self, value: Any, where: str) -> Any:
        if isinstance(value, list):
            return [self.resolve(item, where) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self.ref(argument, where)
            if key == "Fn::GetAtt":
                return self.get_att(argument[0], argument[1], where)
            if key == "Fn::Sub":
                return self.sub(argument, where)
            if key.startswith("Fn::"):
                raise TemplateError(f"{where}: the local runtime cannot resolve {key}")
        return {key: self.resolve(item, f"{where}.{key}") for key, item in value.items()}

    def ref(self, name: str, where: str) -> str:
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": STACK_NAME,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            if "Default" not in self.parameters[name]:
                raise TemplateError(f"{where}: parameter {name} has no Default to use locally")
            return str(self.parameters[name]["Default"])
        resource_type = self.resources.get(name, {}).get("Type")
        if resource_type == "AWS::DynamoDB::Table":
            return table_name(name, self.resources[name])
        if resource_type == "AWS::S3::Bucket":
            return self.resources[name].get("Properties", {}).get("BucketName") or local_name(name)
        if resource_type == "AWS::SQS::Queue":
            return f"{self.endpoint_url}/{ACCOUNT_ID}/{local_name(name)}"
        raise TemplateError(f"{where}: cannot resolve !Ref {name} ({resource_type or 'unknown'}) locally")

    def get_att(self, name: str, attribute: str, where: str) -> str:
        resource_type = self.resources.get(name, {}).get("Type")
        if resource_type == "AWS::DynamoDB::Table":
            arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{table_name(name, self.resources[name])}"
            if attribute == "Arn":
                return arn
        if resource_type == "AWS::SQS::Queue" and attribute == "Arn":
            return f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{local_name(name)}"
        if resource_type == "AWS::SQS::Queue" and attribute == "QueueName":
            return local_name(name)
        if resource_type == "AWS::S3::Bucket" and attribute == "Arn":
            return f"arn:aws:s3:::{self.ref(name, where)}"
        raise TemplateError(f"{where}: cannot resolve !GetAtt {name}.{attribute} locally")

    def sub(self, argument: Any, where: str) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.resolve(variables[name], where))
            if "." in name and not name.startswith("AWS::"):
                resource, attribute = name.split(".", 1)
                return self.get_att(resource, attribute, where)
            return self.ref(name, where)

        return re.sub(r"\$\{([^}!]+)\}", replace, text)


def table_name(logical_id: str, resource: dict[str, Any]) -> str:
    return str(resource.get("Properties", {}).get("TableName") or f"{STACK_NAME}-{logical_id}")


def load_stack(template_path: Path, endpoint_url: str) -> Stack:
    """Everything the runtime serves, read from the template and nothing else."""
    template = load_yaml(template_path)
    resolver = Resolver(template, endpoint_url)
    resources: dict[str, Any] = template.get("Resources") or {}
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    tables, buckets, queues, functions = [], {}, {}, []
    for logical_id, resource in resources.items():
        kind = resource.get("Type")
        if kind == "AWS::DynamoDB::Table":
            properties = resolver.resolve(resource.get("Properties") or {}, logical_id)
            tables.append(TableSpec(logical_id, table_name(logical_id, resource), properties))
        elif kind == "AWS::S3::Bucket":
            buckets[logical_id] = resolver.ref(logical_id, logical_id)
        elif kind == "AWS::SQS::Queue":
            queues[logical_id] = local_name(logical_id)
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::Serverless::Function":
            functions.append(_function(logical_id, resource, globals_, resolver, template_path.parent))
    return Stack(tables, buckets, queues, functions)


def _function(
    name: str, resource: dict[str, Any], globals_: dict[str, Any], resolver: Resolver, root: Path
) -> FunctionSpec:
    properties = resource.get("Properties") or {}
    merged = {**globals_, **properties}
    if "Handler" not in merged or "CodeUri" not in merged:
        raise TemplateError(f"{name}: Handler and CodeUri are required")
    variables = {
        **((globals_.get("Environment") or {}).get("Variables") or {}),
        **((properties.get("Environment") or {}).get("Variables") or {}),
    }
    environment = {
        key: str(resolver.resolve(value, f"{name}.Environment.{key}")) for key, value in variables.items()
    }
    spec = FunctionSpec(
        name=name,
        handler=merged["Handler"],
        code_dir=(root / merged["CodeUri"]).resolve(),
        memory_mb=int(merged.get("MemorySize", 128)),
        timeout_s=int(merged.get("Timeout", 3)),
        environment=environment,
    )
    for event_name, event in (properties.get("Events") or {}).items():
        _add_event(spec, event_name, event)
    return spec


def _add_event(spec: FunctionSpec, event_name: str, event: dict[str, Any]) -> None:
    kind = event.get("Type")
    props = event.get("Properties") or {}
    where = f"{spec.name}.Events.{event_name}"
    if kind == "HttpApi":
        spec.routes.append(HttpRoute(str(props.get("Method", "ANY")).upper(), props.get("Path", "$default")))
    elif kind == "DynamoDB":
        spec.streams.append(_stream_source(props, where))
    elif kind in ("Schedule", "ScheduleV2"):
        expression = props.get("Schedule") or props.get("ScheduleExpression")
        if not expression:
            raise TemplateError(f"{where}: a schedule needs Schedule or ScheduleExpression")
        enabled = props.get("Enabled", True) and props.get("State", "ENABLED") == "ENABLED"
        spec.schedules.append(ScheduleSource(event_name, expression, bool(enabled), props.get("Input")))
    else:
        raise TemplateError(f"{where}: event type {kind} is not supported by the local runtime")


def _stream_source(props: dict[str, Any], where: str) -> StreamSource:
    stream = props.get("Stream")
    if not (isinstance(stream, dict) and stream.get("Fn::GetAtt", [None, None])[1] == "StreamArn"):
        raise TemplateError(f"{where}: Stream must be !GetAtt <Table>.StreamArn")
    patterns = [
        json.loads(item["Pattern"]) for item in (props.get("FilterCriteria") or {}).get("Filters", [])
    ]
    on_failure = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
    queue = None
    if on_failure is not None:
        if not (isinstance(on_failure, dict) and "Fn::GetAtt" in on_failure):
            raise TemplateError(f"{where}: OnFailure Destination must be !GetAtt <Queue>.Arn")
        queue = on_failure["Fn::GetAtt"][0]
    return StreamSource(
        batch_size=int(props.get("BatchSize", 100)),
        maximum_retry_attempts=int(props.get("MaximumRetryAttempts", -1)),
        bisect_on_error=bool(props.get("BisectBatchOnFunctionError", False)),
        report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
        filter_patterns=patterns,
        on_failure_queue=queue,
        starting_position=str(props.get("StartingPosition", "TRIM_HORIZON")),
    )
