"""Shared fixtures: one cache folder per test session, so the digits classifier trains once."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    """A cache folder shared by the tests of this session (never the user's ~/.cache)."""
    return tmp_path_factory.mktemp("lagfam-cache")


@pytest.fixture(scope="session")
def digits_classifier(cache):
    pytest.importorskip("torch")
    from lagrangian_family.evaluate import load_classifier

    return load_classifier("digits", cache_dir=cache)


@pytest.fixture(scope="session")
def digits():
    from lagrangian_family.evaluate import load_split

    return load_split("digits")
