"""A sub-account's result is stored in the signal's detail as a plain dict, written by hand for
speed: it must carry every field of the dataclass, or a field added later goes missing."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from jtrades.engine.dispatch import AccountResult


@given(
    st.builds(
        AccountResult,
        trader_id=st.none() | st.integers(1, 10**9),
        sub_account_id=st.integers(1, 10**9),
        action=st.sampled_from(["open", "close", "reverse", "nothing"]),
        reason=st.text(max_size=20),
        sent=st.integers(0, 9),
        rejected=st.integers(0, 9),
        unknown=st.integers(0, 9),
        expired=st.integers(0, 9),
        messages=st.lists(st.text(max_size=10), max_size=3),
    )
)
def test_as_dict_is_the_dataclass_as_a_dict(result: AccountResult) -> None:
    d = result.as_dict()
    assert d == dataclasses.asdict(result)
    assert d["messages"] is not result.messages  # a copy: the detail outlives the result
