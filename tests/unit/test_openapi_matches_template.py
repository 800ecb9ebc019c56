"""docs/openapi.yaml documents exactly the routes template.yaml serves."""

from pathlib import Path

import yaml

from tests.support.table import http_routes

REPO_ROOT = Path(__file__).resolve().parents[2]
# In the SPEC and the document, not yet in template.yaml.
NOT_YET_SERVED: set[str] = set()


def documented_routes() -> set[str]:
    document = yaml.safe_load((REPO_ROOT / "docs" / "openapi.yaml").read_text())
    return {
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }


def served_routes() -> set[str]:
    return http_routes()


def test_every_served_route_is_documented() -> None:
    assert served_routes() - documented_routes() == set()


def test_every_documented_route_is_served_or_known_to_be_coming() -> None:
    assert documented_routes() - served_routes() <= NOT_YET_SERVED


def test_every_operation_answers_problems_for_bad_requests() -> None:
    document = yaml.safe_load((REPO_ROOT / "docs" / "openapi.yaml").read_text())
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                assert "400" in operation["responses"], f"{method.upper()} {path} documents no 400"
