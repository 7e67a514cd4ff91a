"""Scores of samples, encoders, codes and translations on the digits, against what is known by
construction: real images score as real images, a permuted code is recovered exactly, an
encoder that is the identity keeps the labels, an exact inverse transform keeps every digit."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lagrangian_family.data import DataError  # noqa: E402
from lagrangian_family.errors import ObjectiveError  # noqa: E402
from lagrangian_family.evaluate import (  # noqa: E402
    DOMAINS,
    EvaluationError,
    code_recovery,
    encoder_code_accuracy,
    format_table,
    frechet_distance,
    gaussian_stats,
    load_split,
    probe_encoder,
    reference,
    reference_stats,
    score_samples,
    to_domain,
    translation_kept,
)

# -- samples --------------------------------------------------------------------------------------------------


def test_real_images_score_like_the_reference(digits, digits_classifier, cache):
    s = score_samples(digits.x_test, "digits", cache_dir=cache)
    ref = s["reference"]
    assert s["n"] == ref["n"] == 300
    assert s["classes_covered"] == ref["classes_covered"] == 10
    # the same images in another order: the same numbers
    assert s["confidence"] == pytest.approx(ref["confidence"], rel=1e-9)
    assert s["confidence_ratio"] == pytest.approx(1.0, rel=1e-9)
    assert s["frechet_distance"] == pytest.approx(ref["frechet_distance"], rel=1e-6)
    assert s["class_shares"] == pytest.approx(ref["class_shares"])
    assert s["classifier"]["test_accuracy"] == digits_classifier.test_accuracy


def test_reference_numbers_recomputed_directly(digits, digits_classifier, cache):
    order = np.random.default_rng(0).permutation(300)[:120]
    x, y = digits.x_test[order], digits.y_test[order]
    r = reference("digits", 120, cache_dir=cache)
    p = digits_classifier.probs(x)
    assert r["n"] == 120
    assert r["accuracy"] == pytest.approx(float((p.argmax(axis=1) == y).mean()))
    assert r["confidence"] == pytest.approx(float(p.max(axis=1).mean()))
    mu, sigma = gaussian_stats(digits_classifier.features(digits.x_train))
    expected = frechet_distance(*gaussian_stats(digits_classifier.features(x)), mu, sigma)
    assert r["frechet_distance"] == pytest.approx(expected, rel=1e-6)
    # more than the test split: all of it
    assert reference("digits", 10_000, cache_dir=cache)["n"] == 300


def test_reference_statistics_are_cached(cache, digits_classifier):
    reference_stats("digits", cache_dir=cache)
    entries = sorted(p.name for p in cache.iterdir() if p.name.startswith("digits-reference-"))
    name = f"digits-reference-v1-{digits_classifier.sha256[:16]}.npz"
    assert entries == [name, name + ".lock"]
    # read back: the training images' statistics, recomputed here
    stats = reference_stats("digits", cache_dir=cache)
    mu, sigma = gaussian_stats(digits_classifier.features(load_split("digits").x_train))
    np.testing.assert_allclose(stats["train_mu"], mu, rtol=1e-12)
    np.testing.assert_allclose(stats["train_sigma"], sigma, rtol=1e-12)


def test_degenerate_samples_score_badly(digits, cache):
    ones = digits.x_test[digits.y_test == 1]
    collapsed = np.repeat(ones[:1], 200, axis=0)
    s = score_samples(collapsed, "digits", cache_dir=cache)
    assert s["classes_covered"] == 1 and s["class_shares"][1] == 1.0
    noise = score_samples(np.random.default_rng(0).random((300, 64)), "digits", cache_dir=cache)
    real = score_samples(digits.x_test, "digits", cache_dir=cache)
    assert noise["confidence_ratio"] < 0.9
    assert noise["frechet_distance"] > 10 * real["frechet_distance"]
    assert s["frechet_distance"] > 10 * real["frechet_distance"]


def test_score_needs_two_samples_and_a_known_dataset(cache):
    with pytest.raises(DataError, match="too few"):
        score_samples(np.zeros((1, 64)), "digits", cache_dir=cache)
    with pytest.raises(ObjectiveError, match="unknown dataset"):
        score_samples(np.zeros((4, 64)), "svhn", cache_dir=cache)
    with pytest.raises(DataError, match="look like digits"):
        score_samples(np.zeros((4, 64)), "mnist", cache_dir=cache)
    with pytest.raises(EvaluationError, match="reference images"):
        reference("digits", 1, cache_dir=cache)


def test_format_table_has_every_number(digits, cache):
    s = score_samples(digits.x_test[:150], "digits", cache_dir=cache)
    text = format_table(s, extra={"linear probe accuracy": (0.9312, None)})
    lines = text.splitlines()
    assert lines[0].startswith("| metric (digits")
    row = next(line for line in lines if line.startswith("| mean classifier confidence"))
    assert f"{s['confidence']:.3f}" in row and f"{s['reference']['confidence']:.3f}" in row
    assert any(line.startswith("| linear probe accuracy | 0.931 | – |") for line in lines)
    assert "| class share | 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 |" in lines
    with pytest.raises(EvaluationError, match="score_samples"):
        format_table({"n": 3})
    with pytest.raises(EvaluationError, match="extra row"):
        format_table(s, extra={"probe": 0.9})


# -- encoders ----------------------------------------------------------------------------------------------------

def test_probe_of_the_identity_encoder_reads_the_pixels(digits):
    """The pixels themselves are a good code for the digits: an independent logistic regression
    on raw pixels (scikit-learn, no standardisation) gets about the same accuracy."""
    from sklearn.linear_model import LogisticRegression

    out = probe_encoder(torch.nn.Identity(), "digits")
    assert out["n_train"] == 1497 and out["n_test"] == 300 and out["dim"] == 64
    raw = LogisticRegression(max_iter=5000).fit(digits.x_train, digits.y_train).score(digits.x_test, digits.y_test)
    assert out["accuracy"] > 0.9 and abs(out["accuracy"] - raw) < 0.05


def test_probe_of_a_constant_encoder_is_chance():
    class Constant(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 4)

    out = probe_encoder(Constant(), "digits")
    assert out["accuracy"] == pytest.approx(out["chance"])
    assert out["accuracy"] < 0.15


def test_probe_uses_the_mean_of_a_distribution_and_restores_training_mode():
    from lagrangian_family.backends.torch import GaussianMLPEncoder

    torch.manual_seed(0)
    enc = GaussianMLPEncoder(64, 8, hidden=(32,))
    enc.train()
    seen = {}
    real_forward = enc.forward

    def forward(x):
        seen["training"] = enc.training
        return real_forward(x)

    enc.forward = forward
    a = probe_encoder(enc, "digits", n_train=500, n_test=200)
    b = probe_encoder(enc, "digits", n_train=500, n_test=200)
    assert a == b  # the mean, not a sample: the same codes twice
    assert seen["training"] is False and enc.training is True
    assert a["n_train"] == 500 and a["n_test"] == 200


def test_probe_preprocess_and_bad_sizes():
    calls = []

    def binary(x):
        calls.append(x.shape)
        return (x > 0.5).astype(np.float32)

    probe_encoder(torch.nn.Identity(), "digits", n_train=300, preprocess=binary)
    assert calls == [(300, 64), (300, 64)]
    with pytest.raises(EvaluationError, match="n_train"):
        probe_encoder(torch.nn.Identity(), "digits", n_train=1)
    with pytest.raises(EvaluationError, match="not callable"):
        probe_encoder("encoder", "digits")


# -- InfoGAN ------------------------------------------------------------------------------------------------

def test_a_permuted_code_is_recovered(digits, digits_classifier, cache):
    """Images 'generated' from code c: real test images of digit perm^-1(c). The classifier's
    labels matched to the codes give the code -> digit map back, with the classifier's accuracy."""
    perm = np.random.default_rng(1).permutation(10)
    codes = perm[digits.y_test]
    out = code_recovery(digits.x_test, codes, "digits", cache_dir=cache)
    assert out["mapping"] == {int(perm[d]): d for d in range(10)}
    assert out["accuracy"] == pytest.approx(digits_classifier.test_accuracy)
    one_hot = np.eye(10)[codes]
    assert code_recovery(digits.x_test, one_hot, "digits", cache_dir=cache)["accuracy"] == out["accuracy"]


def test_an_ignored_code_is_near_chance(digits, cache):
    codes = np.random.default_rng(2).integers(0, 10, 300)
    assert code_recovery(digits.x_test, codes, "digits", cache_dir=cache)["accuracy"] < 0.25


def test_encoder_codes_that_ignore_the_image_are_near_chance():
    """(The exact case, codes that rename the labels, is the docstring's example: 1.0.)"""
    torch.manual_seed(0)
    rand_codes = encoder_code_accuracy(lambda b: torch.randn(b.shape[0], 10), "digits")
    assert rand_codes < 0.25
    with pytest.raises(DataError, match="codes"):
        code_recovery(np.zeros((3, 64)), [0, 1], "digits")


# -- CycleGAN / DiscoGAN --------------------------------------------------------------------------------------

@pytest.mark.parametrize("domain", sorted(DOMAINS))
def test_an_exact_translation_keeps_every_digit_the_classifier_reads(digits, digits_classifier, cache, domain):
    translated = to_domain(digits.x_test, domain, side=8)
    kept = translation_kept(translated, digits.y_test, "digits", domain=domain, cache_dir=cache)
    assert kept == pytest.approx(digits_classifier.test_accuracy)


def test_a_translation_that_ignores_its_source_keeps_about_a_tenth(digits, cache):
    rng = np.random.default_rng(3)
    translated = to_domain(digits.x_test[rng.permutation(300)], "invert", side=8)
    assert translation_kept(translated, digits.y_test, "digits", domain="invert", cache_dir=cache) < 0.25


def test_a_translation_judged_in_the_wrong_domain_fails(digits, cache):
    """Rotated translations read as plain digits lose many labels: the domain matters."""
    translated = to_domain(digits.x_test, "rot90", side=8)
    wrong = translation_kept(translated, digits.y_test, "digits", domain="original", cache_dir=cache)
    assert wrong < 0.6


def test_translation_bad_inputs(digits, cache):
    with pytest.raises(ObjectiveError, match="unknown domain") as info:
        translation_kept(digits.x_test, digits.y_test, "digits", domain="inverse", cache_dir=cache)
    assert "invert" in info.value.fix
    with pytest.raises(DataError, match="source labels"):
        translation_kept(digits.x_test, digits.y_test[:10], "digits", cache_dir=cache)
