"""The second domains: each transform written out by hand on a 3x3 image, and its inverse."""

from __future__ import annotations

import numpy as np
import pytest

from lagrangian_family.data import DataError
from lagrangian_family.errors import ObjectiveError
from lagrangian_family.evaluate import DOMAINS, from_domain, to_domain

#  a 3x3 image    0 1 2
#                 3 4 5
#                 6 7 8      (values / 8)
IMAGE = np.arange(9.0).reshape(1, 9) / 8
BY_HAND = {
    "original": [0, 1, 2, 3, 4, 5, 6, 7, 8],
    "rot90": [2, 5, 8, 1, 4, 7, 0, 3, 6],      # counter-clockwise: the right column becomes the top row
    "rot180": [8, 7, 6, 5, 4, 3, 2, 1, 0],
    "rot270": [6, 3, 0, 7, 4, 1, 8, 5, 2],     # clockwise: the left column, bottom up, becomes the top row
    "transposed": [0, 3, 6, 1, 4, 7, 2, 5, 8],
    "flipped": [2, 1, 0, 5, 4, 3, 8, 7, 6],
}


@pytest.mark.parametrize("domain", sorted(BY_HAND))
def test_each_transform_by_hand(domain):
    assert to_domain(IMAGE, domain, side=3).tolist() == [[v / 8 for v in BY_HAND[domain]]]


def test_invert_and_its_alias():
    assert to_domain(IMAGE, "invert", side=3).tolist() == [[1 - v / 8 for v in range(9)]]
    assert to_domain(IMAGE, "inverted", side=3).tolist() == to_domain(IMAGE, "invert", side=3).tolist()


@pytest.mark.parametrize("domain", sorted(DOMAINS))
def test_from_domain_undoes_to_domain(domain):
    # multiples of 1/256: 1 - x is exact in float32, so inverting twice is exact too
    x = (np.random.default_rng(0).integers(0, 257, (5, 28, 28)) / 256).astype(np.float32)
    back = from_domain(to_domain(x, domain), domain)
    np.testing.assert_array_equal(back, x.reshape(5, 784))


def test_every_domain_is_covered_by_hand():
    assert set(BY_HAND) | {"invert"} == set(DOMAINS)


def test_bad_domain_and_shape():
    with pytest.raises(ObjectiveError, match="unknown domain"):
        to_domain(IMAGE, "rotate", side=3)
    with pytest.raises(DataError, match="not 3x3"):
        to_domain(np.zeros((1, 10)), "rot90", side=3)


def test_the_same_transforms_as_the_data_module_where_it_has_them():
    from lagrangian_family import data

    if not hasattr(data, "domain_transform"):
        pytest.skip("lagrangian_family.data has no domain_transform on this branch")
    x = np.random.default_rng(1).random((4, 784)).astype(np.float32)
    for name in data.DOMAIN_TRANSFORMS:
        np.testing.assert_array_equal(to_domain(x, name), data.domain_transform(x, name))
