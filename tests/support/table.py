"""The test table is built from template.yaml's own definition, so tests cannot drift from the stack."""

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
_TABLE_KEYS = (
    "AttributeDefinitions",
    "KeySchema",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "BillingMode",
    "ProvisionedThroughput",
    "StreamSpecification",
)


class _CfnLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """SafeLoader (libyaml's when PyYAML has it) that turns short-form tags (!Ref X) into their long
    JSON form ({"Ref": "X"})."""


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
    assert isinstance(document, dict), f"{path} is not a CloudFormation template"
    return document


def load_yaml_template() -> dict[str, Any]:
    """template.yaml, parsed once a process (a copy each call: callers may change theirs)."""
    return copy.deepcopy(_parsed_template(TEMPLATE.stat().st_mtime_ns))


@functools.cache
def _parsed_template(_mtime: int) -> dict[str, Any]:
    return load_yaml(TEMPLATE)


def http_routes() -> set[str]:
    """Every `METHOD /path` the template's functions serve through the HTTP API."""
    return {
        f"{event['Properties']['Method'].upper()} {event['Properties']['Path']}"
        for resource in load_yaml_template()["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
        for event in resource["Properties"].get("Events", {}).values()
        if event["Type"] == "HttpApi"
    }


def create_table(client: Any, table_name: str, stream: bool = True) -> None:
    """The template's table (keys, indexes, stream, TTL) under another name; `stream=False` leaves the
    stream out (a copy no one reads)."""
    properties = load_yaml_template()["Resources"]["Table"]["Properties"]
    arguments = {key: properties[key] for key in _TABLE_KEYS if key in properties}
    if not stream:
        arguments.pop("StreamSpecification", None)
    elif "StreamSpecification" in arguments:
        arguments["StreamSpecification"] = {"StreamEnabled": True, **arguments["StreamSpecification"]}
    client.create_table(TableName=table_name, **arguments)
    ttl = properties.get("TimeToLiveSpecification") or {}
    if ttl.get("Enabled"):
        client.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
        )
