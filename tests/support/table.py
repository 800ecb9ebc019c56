"""The test table is built from template.yaml's own definition, so tests cannot drift from the stack."""

from pathlib import Path
from typing import Any

from local.embedded_aws import create_table as create_table_from_spec
from local.template import TableSpec, load_yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"


def load_yaml_template() -> dict[str, Any]:
    return load_yaml(TEMPLATE)


def create_table(client: Any, table_name: str) -> None:
    properties = dict(load_yaml_template()["Resources"]["Table"]["Properties"])
    create_table_from_spec(client, TableSpec("Table", table_name, properties))
