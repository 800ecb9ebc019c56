"""The real service from template.yaml, served by the local runtime, driven over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.e2e.conftest import RunningRuntime

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

SEED = ["AVITO_VOICE_MESSAGES", "AVITO_PERFORMANCE_VAS", "AVITO_DISCOUNT_30", "AVITO_DISCOUNT_50"]


def create(service: RunningRuntime, slug: str) -> requests.Response:
    return requests.post(f"{service.url}/segments", json={"slug": slug}, timeout=10)


def change(service: RunningRuntime, user_id: int, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{service.url}/users/{user_id}/segments", json=body, timeout=10)


def active(service: RunningRuntime, user_id: int) -> list[str]:
    response = requests.get(f"{service.url}/users/{user_id}/segments", timeout=10)
    assert response.status_code == 200, response.text
    return list(response.json()["segments"])


def eventually(probe: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture(scope="module")
def seeded(service: RunningRuntime) -> RunningRuntime:
    for slug in SEED:
        assert create(service, slug).status_code == 201
    assert (
        change(
            service, 1000, {"add": ["AVITO_VOICE_MESSAGES", "AVITO_PERFORMANCE_VAS", "AVITO_DISCOUNT_30"]}
        ).status_code
        == 200
    )
    assert change(service, 1002, {"add": ["AVITO_VOICE_MESSAGES", "AVITO_DISCOUNT_50"]}).status_code == 200
    return service


def test_the_seed_scenario_reads_back_sorted(seeded: RunningRuntime) -> None:
    assert active(seeded, 1000) == ["AVITO_DISCOUNT_30", "AVITO_PERFORMANCE_VAS", "AVITO_VOICE_MESSAGES"]
    assert active(seeded, 1002) == ["AVITO_DISCOUNT_50", "AVITO_VOICE_MESSAGES"]
    assert active(seeded, 1004) == []


def test_created_segment_answers_201_with_location(service: RunningRuntime) -> None:
    response = create(service, "E2E_LOCATION")
    assert response.status_code == 201
    assert response.headers["Location"] == "/segments/E2E_LOCATION"
    assert response.json()["slug"] == "E2E_LOCATION"


def test_bad_json_is_a_400_problem(service: RunningRuntime) -> None:
    response = requests.post(
        f"{service.url}/segments", data="{not json", headers={"content-type": "application/json"}, timeout=10
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 400


def test_unknown_slug_is_a_404_naming_it(seeded: RunningRuntime) -> None:
    response = change(seeded, 1000, {"add": ["NO_SUCH_SEGMENT"]})
    assert response.status_code == 404
    assert response.json()["missing"] == ["NO_SUCH_SEGMENT"]


def test_duplicate_create_is_a_409(seeded: RunningRuntime) -> None:
    response = create(seeded, "AVITO_VOICE_MESSAGES")
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")


def test_unknown_route_is_api_gateways_404(service: RunningRuntime) -> None:
    response = requests.get(f"{service.url}/no/such/route", timeout=10)
    assert (response.status_code, response.json()) == (404, {"message": "Not Found"})


def test_a_deleted_segment_disappears_from_its_users(service: RunningRuntime) -> None:
    # Given a user in a segment
    assert create(service, "E2E_DOOMED").status_code == 201
    assert change(service, 2000, {"add": ["E2E_DOOMED"]}).status_code == 200
    # When the segment is deleted
    assert requests.delete(f"{service.url}/segments/E2E_DOOMED", timeout=10).status_code == 204
    # Then within a second the user no longer has it
    assert eventually(lambda: "E2E_DOOMED" not in active(service, 2000), timeout_s=1.0)


def test_a_membership_expires_after_its_ttl(service: RunningRuntime) -> None:
    assert create(service, "E2E_SHORT").status_code == 201
    assert change(service, 3000, {"add": [{"slug": "E2E_SHORT", "ttl_seconds": 1}]}).status_code == 200
    assert "E2E_SHORT" in active(service, 3000)
    time.sleep(2)
    assert "E2E_SHORT" not in active(service, 3000)
