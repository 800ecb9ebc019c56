"""The test table is built from template.yaml's own definition, so tests cannot drift from the stack."""

from pathlib import Path
from typing import Any

from local.template import load_yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"


def load_yaml_template() -> dict[str, Any]:
    return load_yaml(TEMPLATE)


def table_properties() -> dict[str, Any]:
    return dict(load_yaml_template()["Resources"]["Table"]["Properties"])


def create_table_kwargs(table_name: str) -> dict[str, Any]:
    """CreateTable arguments from the Table resource; fields CreateTable does not take are left out."""
    properties = table_properties()
    kwargs = {
        "TableName": table_name,
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
        "BillingMode": properties.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if "GlobalSecondaryIndexes" in properties:
        kwargs["GlobalSecondaryIndexes"] = properties["GlobalSecondaryIndexes"]
    if "StreamSpecification" in properties:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, **properties["StreamSpecification"]}
    return kwargs


def create_table(client: Any, table_name: str) -> None:
    client.create_table(**create_table_kwargs(table_name))
    ttl = table_properties().get("TimeToLiveSpecification")
    if ttl:
        client.update_time_to_live(TableName=table_name, TimeToLiveSpecification=ttl)
