"""What the domain needs from storage. dal/ implements it; tests may pass an in-memory fake."""

from datetime import datetime
from typing import Protocol

from models.domain import GroupAllocation, MembershipRecord, RuleChange, Segment, UserUpdate


class SegmentStore(Protocol):
    def active_segments(self) -> list[Segment]: ...

    def list_segments(self, limit: int, after_slug: str | None) -> tuple[list[Segment], bool]: ...

    def find_segment(self, slug: str) -> tuple[Segment, bool] | None: ...

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
    ) -> None: ...

    def delete_segment(
        self,
        segment: Segment,
        deleted_at: datetime,
        rule: RuleChange | None = None,
        group: GroupAllocation | None = None,
    ) -> None: ...

    def rule_changes(self) -> list[RuleChange]: ...

    def user_records(self, user_id: int, consistent: bool = False) -> list[MembershipRecord]: ...

    def apply_user_update(self, update: UserUpdate) -> None: ...
