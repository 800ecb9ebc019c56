"""The service as deployed, driven over signed HTTPS: the README's scenario and its errors."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.support.signed_http import ApiClient

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("deployed")]

SEED = ["AVITO_VOICE_MESSAGES", "AVITO_PERFORMANCE_VAS", "AVITO_DISCOUNT_30", "AVITO_DISCOUNT_50"]


def create(api: ApiClient, slug: str) -> requests.Response:
    return api.post("/segments", json={"slug": slug})


def change(api: ApiClient, user_id: int, body: dict[str, Any]) -> requests.Response:
    return api.post(f"/users/{user_id}/segments", json=body)


def active(api: ApiClient, user_id: int) -> list[str]:
    response = api.get(f"/users/{user_id}/segments")
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
def seeded(api: ApiClient) -> ApiClient:
    for slug in SEED:
        assert create(api, slug).status_code == 201
    assert (
        change(
            api, 1000, {"add": ["AVITO_VOICE_MESSAGES", "AVITO_PERFORMANCE_VAS", "AVITO_DISCOUNT_30"]}
        ).status_code
        == 200
    )
    assert change(api, 1002, {"add": ["AVITO_VOICE_MESSAGES", "AVITO_DISCOUNT_50"]}).status_code == 200
    return api


def test_the_seed_scenario_reads_back_sorted(seeded: ApiClient) -> None:
    assert active(seeded, 1000) == ["AVITO_DISCOUNT_30", "AVITO_PERFORMANCE_VAS", "AVITO_VOICE_MESSAGES"]
    assert active(seeded, 1002) == ["AVITO_DISCOUNT_50", "AVITO_VOICE_MESSAGES"]
    assert active(seeded, 1004) == []


def test_created_segment_answers_201_with_location(api: ApiClient) -> None:
    response = create(api, "E2E_LOCATION")
    assert response.status_code == 201
    assert response.headers["Location"] == "/segments/E2E_LOCATION"
    assert response.json()["slug"] == "E2E_LOCATION"


def test_bad_json_is_a_400_problem(api: ApiClient) -> None:
    response = api.post("/segments", data="{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 400


def test_unknown_slug_is_a_404_naming_it(seeded: ApiClient) -> None:
    response = change(seeded, 1000, {"add": ["NO_SUCH_SEGMENT"]})
    assert response.status_code == 404
    assert response.json()["missing"] == ["NO_SUCH_SEGMENT"]


def test_duplicate_create_is_a_409(seeded: ApiClient) -> None:
    response = create(seeded, "AVITO_VOICE_MESSAGES")
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")


def test_unknown_route_is_api_gateways_404(api: ApiClient) -> None:
    response = api.get("/no/such/route")
    assert (response.status_code, response.json()) == (404, {"message": "Not Found"})


def test_a_deleted_segment_disappears_from_its_users(api: ApiClient) -> None:
    # Given a user in a segment
    assert create(api, "E2E_DOOMED").status_code == 201
    assert change(api, 2000, {"add": ["E2E_DOOMED"]}).status_code == 200
    # When the segment is deleted
    assert api.delete("/segments/E2E_DOOMED").status_code == 204
    # Then within a second the user no longer has it
    assert eventually(lambda: "E2E_DOOMED" not in active(api, 2000), timeout_s=1.0)


def test_a_membership_expires_after_its_ttl(api: ApiClient) -> None:
    assert create(api, "E2E_SHORT").status_code == 201
    assert change(api, 3000, {"add": [{"slug": "E2E_SHORT", "ttl_seconds": 1}]}).status_code == 200
    assert "E2E_SHORT" in active(api, 3000)
    time.sleep(2)
    assert "E2E_SHORT" not in active(api, 3000)


def test_an_unsigned_call_is_refused(api: ApiClient) -> None:
    # Given a client without credentials (the API's authorizer is IAM)
    anonymous = ApiClient(api.base_url, auth=None, verify=api.trust)
    # When it calls a route, Then API Gateway refuses it before any function runs
    response = anonymous.get("/segments")
    assert response.status_code == 403, response.text


def test_an_expiry_leaves_the_member_counts_within_seconds(api: ApiClient) -> None:
    """The sweeper ends expired memberships every second on the emulator's stack (ExpirySweepSeconds):
    the expiry is in history and the counts a moment later, not at the next minute."""
    assert create(api, "E2E_COUNTED").status_code == 201
    assert change(api, 3100, {"add": [{"slug": "E2E_COUNTED", "ttl_seconds": 3}]}).status_code == 200
    assert change(api, 3101, {"add": ["E2E_COUNTED"]}).status_code == 200

    def explicit() -> int:
        return int(api.get("/segments/E2E_COUNTED").json()["members"]["explicit"])

    assert eventually(lambda: explicit() == 2, timeout_s=10), explicit()
    expired_at = time.monotonic() + 3
    assert eventually(lambda: explicit() == 1, timeout_s=25), explicit()
    # within the sweeper's gap between two runs (a few seconds) and the stream's delivery
    assert time.monotonic() - expired_at < 15
