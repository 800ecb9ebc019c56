"""The SPEC's seed scenario end to end, every route through its own handler and events/ file."""

from tests.support.api import Api


def test_seed_users_have_exactly_the_segments_they_were_given(seeded: Api) -> None:
    # Given the seed scenario / When each user is read / Then the lists match the SPEC, sorted
    assert seeded.segments_of(1000) == ["AVITO_DISCOUNT_30", "AVITO_PERFORMANCE_VAS", "AVITO_VOICE_MESSAGES"]
    assert seeded.segments_of(1002) == ["AVITO_DISCOUNT_50", "AVITO_VOICE_MESSAGES"]
    assert seeded.segments_of(1004) == []


def test_update_answers_added_removed_unchanged_and_the_new_set(seeded: Api) -> None:
    answer = seeded.change_user(
        1000,
        add=["AVITO_VOICE_MESSAGES", "AVITO_DISCOUNT_50"],
        remove=["AVITO_DISCOUNT_30", "AVITO_PERFORMANCE_VAS"],
    )
    assert answer.status == 200
    assert answer.body == {
        "user_id": 1000,
        "added": ["AVITO_DISCOUNT_50"],
        "removed": ["AVITO_DISCOUNT_30", "AVITO_PERFORMANCE_VAS"],
        "unchanged": ["AVITO_VOICE_MESSAGES"],
        "segments": ["AVITO_DISCOUNT_50", "AVITO_VOICE_MESSAGES"],
    }
    assert seeded.segments_of(1000) == ["AVITO_DISCOUNT_50", "AVITO_VOICE_MESSAGES"]


def test_details_show_source_and_times(seeded: Api) -> None:
    answer = seeded.user_segments(1002, details=True)
    assert answer.status == 200
    memberships = answer.body["memberships"]
    assert [m["slug"] for m in memberships] == ["AVITO_DISCOUNT_50", "AVITO_VOICE_MESSAGES"]
    assert all(m["source"] == "manual" and m["expires_at"] is None for m in memberships)
    assert all(m["added_at"].endswith("Z") for m in memberships)


def test_deleted_segment_disappears_from_every_member_at_once(seeded: Api) -> None:
    assert seeded.delete_segment("AVITO_VOICE_MESSAGES").status == 204
    assert seeded.segments_of(1000) == ["AVITO_DISCOUNT_30", "AVITO_PERFORMANCE_VAS"]
    assert seeded.segments_of(1002) == ["AVITO_DISCOUNT_50"]
    assert seeded.get_segment("AVITO_VOICE_MESSAGES").status == 404
