"""The metrics on arrays, against numbers computed independently: closed forms of the Fréchet
distance, hand-built probability tables, confusions whose best matching is found by brute force,
synthetic codes whose linear separability is known."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.linalg import sqrtm
from scipy.stats import ortho_group

from lagrangian_family.data import DataError
from lagrangian_family.errors import ObjectiveError
from lagrangian_family.evaluate import (
    best_matching,
    class_coverage,
    class_shares,
    frechet_distance,
    frechet_distance_of,
    gaussian_stats,
    linear_probe,
    matched_accuracy,
    mean_confidence,
)

# -- Fréchet distance ------------------------------------------------------------------------------------


def closed_form_commuting(mu1, a, mu2, b):
    """‖μ1 − μ2‖² + Σ (√a_i − √b_i)²: covariances with eigenvalues a and b in the same eigenbasis."""
    return float(np.sum((np.asarray(mu1) - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))


def test_frechet_one_dimension_by_hand():
    # N(1, 9) vs N(-1, 4): (1 - -1)² + (3 - 2)² = 5
    assert frechet_distance([1.0], [[9.0]], [-1.0], [[4.0]]) == pytest.approx(5.0, abs=1e-12)


def test_frechet_diagonal_covariances_closed_form():
    rng = np.random.default_rng(0)
    for d in (1, 3, 16):
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        a, b = rng.uniform(0.1, 5, d), rng.uniform(0.1, 5, d)
        expected = closed_form_commuting(mu1, a, mu2, b)
        assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_frechet_commuting_full_covariances_closed_form():
    rng = np.random.default_rng(1)
    q = ortho_group.rvs(6, random_state=2)
    a, b = rng.uniform(0.2, 3, 6), rng.uniform(0.2, 3, 6)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(closed_form_commuting(mu1, a, mu2, b), rel=1e-9)


def test_frechet_non_commuting_matches_the_sqrtm_formula():
    """Non-commuting covariances: the definition with scipy's sqrtm of the product (the FID papers' code)."""
    rng = np.random.default_rng(3)
    for d in (2, 5, 10):
        m1, m2 = rng.normal(size=(d, d)), rng.normal(size=(d, d))
        s1, s2 = m1 @ m1.T + 0.1 * np.eye(d), m2 @ m2.T + 0.1 * np.eye(d)
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        root = sqrtm(s1 @ s2).real
        expected = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(root))
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_frechet_is_a_squared_distance():
    rng = np.random.default_rng(4)
    m = rng.normal(size=(4, 4))
    s = m @ m.T
    mu = rng.normal(size=4)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-9)
    s2 = np.diag(rng.uniform(1, 2, 4))
    assert frechet_distance(mu, s, mu + 1, s2) == pytest.approx(frechet_distance(mu + 1, s2, mu, s), rel=1e-9)


def test_frechet_singular_covariance_is_finite_and_exact():
    # rank-one covariances along the same axis: N(0, diag(4, 0)) vs N(0, diag(1, 0)) -> (2 - 1)² = 1
    assert frechet_distance([0, 0], np.diag([4.0, 0.0]), [0, 0], np.diag([1.0, 0.0])) == pytest.approx(1.0, abs=1e-9)


def test_frechet_of_samples_converges_to_the_closed_form():
    rng = np.random.default_rng(5)
    mu1, mu2 = np.array([0.0, 1.0, -1.0]), np.array([0.5, 0.0, 0.0])
    a, b = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 1.0])
    expected = closed_form_commuting(mu1, a, mu2, b)
    errors = []
    for n in (1_000, 10_000, 200_000):
        x = mu1 + rng.normal(size=(n, 3)) * np.sqrt(a)
        y = mu2 + rng.normal(size=(n, 3)) * np.sqrt(b)
        errors.append(abs(frechet_distance_of(x, y) - expected))
    assert errors[-1] < 0.02 * expected
    assert errors[-1] < errors[0]


def test_gaussian_stats_are_mean_and_unbiased_covariance():
    x = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 4.0]])
    mu, sigma = gaussian_stats(x)
    assert mu.tolist() == [3.0, 4.0]
    # by hand: deviations (-2,-2), (0,2), (2,0); sums of products / (n - 1) = 2
    assert sigma.tolist() == [[4.0, 2.0], [2.0, 4.0]]


@pytest.mark.parametrize(("args", "match"), [
    (([0.0, 0.0], np.eye(2), [0.0], np.eye(1)), "different dimensions"),
    (([0.0, 0.0], np.array([[1.0, 0.5], [0.0, 1.0]]), [0.0, 0.0], np.eye(2)), "not a symmetric"),
    (([np.nan, 0.0], np.eye(2), [0.0, 0.0], np.eye(2)), "not finite"),
])
def test_frechet_bad_inputs_are_typed_errors(args, match):
    with pytest.raises(DataError, match=match):
        frechet_distance(*args)


def test_gaussian_stats_needs_two_rows():
    with pytest.raises(DataError, match="N >= 2"):
        gaussian_stats(np.zeros((1, 3)))


# -- coverage and confidence --------------------------------------------------------------------------------

def table(rows):
    """Probability rows from (class, confidence) pairs over four classes, the rest spread evenly."""
    out = []
    for k, c in rows:
        r = np.full(4, (1 - c) / 3)
        r[k] = c
        out.append(r)
    return np.array(out)


def test_coverage_and_confidence_on_a_hand_built_table():
    # 20 samples: 10 in class 0, 5 in class 1, 4 in class 2, 1 in class 3 (exactly 5%: covered)
    rows = [(0, 0.9)] * 10 + [(1, 0.6)] * 5 + [(2, 0.5)] * 4 + [(3, 0.4)]
    probs = table(rows)
    cov = class_coverage(probs)
    assert cov["shares"] == [0.5, 0.25, 0.2, 0.05]
    assert cov["covered"] == 4
    # (10 * 0.9 + 5 * 0.6 + 4 * 0.5 + 0.4) / 20 = 14.4 / 20
    assert mean_confidence(probs) == pytest.approx(0.72, abs=1e-12)


def test_a_class_under_five_percent_is_not_covered():
    rows = [(0, 0.9)] * 11 + [(1, 0.9)] * 9 + [(3, 0.9)]  # class 3: 1 of 21 < 5%
    cov = class_coverage(table(rows))
    assert cov["covered"] == 2 and cov["shares"][3] == pytest.approx(1 / 21)
    assert class_coverage(table(rows), threshold=0.04)["covered"] == 3


def test_shares_from_labels_and_from_probabilities_agree():
    probs = table([(2, 0.7), (0, 0.8), (2, 0.9), (1, 0.5)])
    assert class_shares(probs).tolist() == class_shares([2, 0, 2, 1], n_classes=4).tolist() == [0.25, 0.25, 0.5, 0.0]


@pytest.mark.parametrize("bad", [np.array([[0.5, 0.6]]), np.array([[-0.1, 1.1]]), np.zeros((0, 3)), np.ones(3)])
def test_bad_probabilities_are_typed_errors(bad):
    with pytest.raises(DataError):
        mean_confidence(bad)


def test_bad_threshold():
    with pytest.raises(ObjectiveError, match="threshold"):
        class_coverage([0, 1], threshold=0)


# -- Hungarian matching ---------------------------------------------------------------------------------------

def test_a_permuted_labelling_is_matched_exactly():
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 10, 1000)
    perm = rng.permutation(10)
    mapping, acc = best_matching(perm[labels], labels)
    assert acc == 1.0
    assert mapping == {int(perm[k]): k for k in range(10)}


def brute_force_best(counts: np.ndarray) -> int:
    """The largest sum of a one-to-one assignment, by trying every permutation."""
    k = counts.shape[0]
    return max(sum(counts[i, p[i]] for i in range(k)) for p in itertools.permutations(range(k)))


def test_a_known_confusion_against_brute_force():
    # rows: code, columns: label; the greedy choice (code 0 -> label 0, 50) is not the best
    counts = np.array([[50, 45, 0, 0],
                       [48, 5, 0, 2],
                       [0, 10, 30, 20],
                       [3, 0, 25, 12]])
    codes = np.repeat(np.repeat(np.arange(4), 4), counts.ravel())
    labels = np.repeat(np.tile(np.arange(4), 4), counts.ravel())
    best = brute_force_best(counts)
    assert best == 45 + 48 + 20 + 25
    mapping, acc = best_matching(codes, labels)
    assert acc == pytest.approx(best / counts.sum())
    assert mapping == {0: 1, 1: 0, 2: 3, 3: 2}


def test_matching_with_more_codes_than_labels_and_scores():
    # three code values, two labels: the third code cannot be matched and counts as wrong
    codes = np.array([0, 0, 1, 1, 2, 2])
    labels = np.array([5, 5, 7, 7, 7, 5])
    assert matched_accuracy(codes, labels) == pytest.approx(4 / 6)
    scores = np.eye(3)[codes] * 0.8 + 0.1
    assert matched_accuracy(scores, labels) == pytest.approx(4 / 6)


def test_independent_codes_match_near_chance():
    rng = np.random.default_rng(7)
    acc = matched_accuracy(rng.integers(0, 10, 5000), rng.integers(0, 10, 5000))
    assert 0.1 <= acc < 0.14


def test_matching_needs_pairs():
    with pytest.raises(DataError, match="pair up"):
        matched_accuracy([0, 1], [0, 1, 1])
    with pytest.raises(DataError, match="whole numbers"):
        matched_accuracy([0, 1], [0.5, 1])


# -- linear probe --------------------------------------------------------------------------------------------

def test_probe_on_linearly_separable_codes_is_perfect():
    rng = np.random.default_rng(8)
    y = rng.integers(0, 10, 3000)
    centres = rng.normal(size=(10, 8)) * 5
    z = centres[y] + rng.normal(size=(3000, 8)) * 0.3
    out = linear_probe(z[:2000], y[:2000], z[2000:], y[2000:])
    assert out["accuracy"] >= 0.999
    assert out["converged"] and out["n_train"] == 2000 and out["n_test"] == 1000 and out["dim"] == 8


def test_probe_on_noise_is_at_chance():
    rng = np.random.default_rng(9)
    y = rng.integers(0, 10, 6000)
    z = rng.normal(size=(6000, 16))
    out = linear_probe(z[:4000], y[:4000], z[4000:], y[4000:])
    assert abs(out["accuracy"] - 0.1) < 0.035
    assert abs(out["chance"] - 0.1) < 0.035


def test_probe_standardises_the_codes():
    """A code whose one informative coordinate is tiny next to a huge useless one is still read."""
    rng = np.random.default_rng(10)
    y = rng.integers(0, 2, 2000)
    z = np.stack([1e-4 * (2 * y - 1) + 1e-6 * rng.normal(size=2000), 1e4 * rng.normal(size=2000)], axis=1)
    assert linear_probe(z[:1000], y[:1000], z[1000:], y[1000:])["accuracy"] > 0.99


def test_probe_bad_inputs():
    z = np.zeros((4, 2))
    with pytest.raises(DataError, match="one class"):
        linear_probe(z, [1, 1, 1, 1], z, [0, 1, 0, 1])
    with pytest.raises(DataError, match="different sizes"):
        linear_probe(z, [0, 1, 0, 1], np.zeros((4, 3)), [0, 1, 0, 1])
    with pytest.raises(DataError, match="training labels"):
        linear_probe(z, [0, 1], z, [0, 1, 0, 1])
    with pytest.raises(DataError, match="NaN"):
        linear_probe(np.full((4, 2), np.nan), [0, 1, 0, 1], z, [0, 1, 0, 1])
