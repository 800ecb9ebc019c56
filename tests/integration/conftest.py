import pytest

from tests.support.api import Api


@pytest.fixture
def api(aws: None) -> Api:
    return Api()


SEED_SEGMENTS = ["AVITO_VOICE_MESSAGES", "AVITO_PERFORMANCE_VAS", "AVITO_DISCOUNT_30", "AVITO_DISCOUNT_50"]


@pytest.fixture
def seeded(api: Api) -> Api:
    """The SPEC's example: four segments; user 1000 has three, 1002 two, 1004 none."""
    for slug in SEED_SEGMENTS:
        assert api.create_segment(slug).status == 201
    assert (
        api.change_user(
            1000, add=["AVITO_VOICE_MESSAGES", "AVITO_PERFORMANCE_VAS", "AVITO_DISCOUNT_30"]
        ).status
        == 200
    )
    assert api.change_user(1002, add=["AVITO_VOICE_MESSAGES", "AVITO_DISCOUNT_50"]).status == 200
    return api
