"""Test-suite settings: ``auto`` follows the default rule here, whatever plans the user's
cache directory holds (tests of the planner, tests/test_plan.py, set up their own)."""

import pytest

from fastnn import _dispatch, _plan


@pytest.fixture(autouse=True, scope="session")
def _no_user_plans():
    saved = (_plan._plans, _plan._autotune, _dispatch._planner)
    _plan._plans, _plan._autotune = {}, False
    _plan._memo.clear()
    _dispatch.set_planner(None)
    yield
    _plan._plans, _plan._autotune = saved[0], saved[1]
    _plan._memo.clear()
    _dispatch.set_planner(saved[2])
