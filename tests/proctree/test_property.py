"""Property: whatever the tree's shape and manners, terminate_tree leaves nothing alive and
never touches a bystander."""

from __future__ import annotations

import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proctree_helpers import Runner, alive_by_token, new_token

import proctree

shapes = st.fixed_dictionaries(
    {
        "children": st.integers(0, 3),
        "grandchildren": st.integers(0, 2),
        "ignore_term": st.booleans(),
        "ignore_eof": st.booleans(),
        "escape": st.booleans() if sys.platform != "win32" else st.just(False),
        "scrub_escapee": st.booleans(),
        "fork_on_term": st.booleans() if sys.platform != "win32" else st.just(False),
    }
)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(shape=shapes, fallback=st.booleans())
def test_any_tree_is_ended_completely(tmp_path, session_guardian, shape, fallback) -> None:
    run = Runner(new_token(), tmp_path)
    bystander_run = Runner(new_token(), tmp_path)
    proctree.force_fallback(fallback)
    try:
        bystander = bystander_run.start(mark=None, contained=False)
        tree = run.start(mark=run.mark, **shape)
        res = tree.end(mark=run.mark, token=run.token, grace=0.3)
        assert res.clean, res
        assert not [i for i in tree.ids() if proctree.is_alive(i)]
        assert not alive_by_token(run.token)
        assert proctree.is_alive(bystander.root)
        assert not set(bystander.ids()) & set(res.ended)
    finally:
        proctree.force_fallback(False)
        run.cleanup()
        bystander_run.cleanup()
