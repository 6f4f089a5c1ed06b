"""The batch size of an inference component's rolling update or rollback."""

from __future__ import annotations

from modelhost.domain.inference_components import batch_size


def test_a_copy_count_or_a_share_of_the_copies_and_at_least_one() -> None:
    assert batch_size({"Type": "COPY_COUNT", "Value": 2}, 5) == 2
    assert batch_size({"Type": "CAPACITY_PERCENT", "Value": 50}, 5) == 2
    assert batch_size({"Type": "CAPACITY_PERCENT", "Value": 5}, 4) == 1
    # Without a size, every copy at once (as room allows).
    assert batch_size(None, 4) is None
    assert batch_size({}, 4) is None
