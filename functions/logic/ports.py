"""What the domain needs from storage. dal/ implements it; tests may pass an in-memory fake."""

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from models.domain import GroupAllocation, MembershipRecord, RuleChange, Segment, UserUpdate


class SegmentStore(Protocol):
    def list_segments(self, limit: int, after_slug: str | None) -> tuple[list[Segment], bool]: ...

    def find_segment(self, slug: str) -> tuple[Segment, bool] | None: ...

    def live_segments(self, slugs: Iterable[str], consistent: bool) -> dict[str, Segment]: ...

    def percentage_segments(self, consistent: bool = False) -> list[Segment]: ...

    def find_group(self, name: str) -> GroupAllocation: ...

    def create_segment(
        self,
        segment: Segment,
        replaces_generation: int | None,
        rule: RuleChange | None = None,
        group: GroupAllocation | None = None,
    ) -> None: ...

    def save_segment(
        self,
        segment: Segment,
        expected_revision: int,
        rule: RuleChange | None = None,
        group: GroupAllocation | None = None,
        fence: str | None = None,
    ) -> None: ...

    def fence_segment(self, segment: Segment, token: str, at: datetime) -> Segment: ...

    def release_fence(self, segment: Segment, token: str) -> None: ...

    def delete_segment(
        self,
        segment: Segment,
        deleted_at: datetime,
        rule: RuleChange | None = None,
        group: GroupAllocation | None = None,
        fence: str | None = None,
    ) -> None: ...

    def user_records(self, user_id: int, consistent: bool = False) -> list[MembershipRecord]: ...

    def apply_user_update(self, update: UserUpdate, token: str) -> None: ...
