"""Fixtures of the planner tests."""

import pytest

from helpers.fingerprints import make_fingerprint


@pytest.fixture
def fingerprint_factory():
    return make_fingerprint
