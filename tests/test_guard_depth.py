"""The depth guard's shortcuts: the level-counting walk agrees with the path-building one, and the bracket bound
the cohort scan uses to skip the walk (``shallow_text``) never skips a resource that is too deep."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from milan_fhir._adapters import _guard
from milan_fhir._adapters._guard import MAX_DEPTH, guard_fault, shallow_text

_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1), st.text(alphabet="{}[]\":,ab\\ ", max_size=8))


def _nest(depth: int, leaf: object, as_list: list[bool]) -> object:
    v = leaf
    for i in range(depth - 1):
        v = [v] if as_list[i % len(as_list)] else {"k": v}
    return {"resourceType": "Observation", "x": v} if depth > 1 else {"resourceType": "Observation"}


@settings(max_examples=300, deadline=None)
@given(depth=st.integers(1, MAX_DEPTH + 6), leaf=_leaf, as_list=st.lists(st.booleans(), min_size=1, max_size=5))
def test_bound_and_walk_agree_with_the_depth(depth, leaf, as_list):
    res = _nest(depth, leaf, as_list)
    too_deep = _guard._depth_fault(res) is not None
    assert _guard._too_deep(res) is too_deep
    if shallow_text(orjson.dumps(res)):
        assert not too_deep  # the bound is sound: skipping the walk never skips a fault
    fault = guard_fault(res)
    assert (fault is not None and "nested deeper" in fault[1]) is too_deep


def test_the_edge():
    ok = _nest(MAX_DEPTH, 1, [False])
    deep = _nest(MAX_DEPTH + 1, 1, [False])
    assert _guard._depth_fault(ok) is None and not _guard._too_deep(ok)
    assert _guard._depth_fault(deep) is not None and _guard._too_deep(deep)
    assert not shallow_text(orjson.dumps(deep))
