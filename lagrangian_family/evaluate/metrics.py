"""The metrics themselves, on arrays: no model, no classifier, no training objective.

* :func:`class_coverage`, :func:`mean_confidence`: from a classifier's probabilities (or labels)
  on samples; a class is covered when its share of the predicted labels is at least 5%.
* :func:`gaussian_stats`, :func:`frechet_distance`: the Fréchet distance between Gaussians
  fitted to two sets of features (FID-style),
  d² = ‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^{1/2}).
* :func:`matched_accuracy`, :func:`best_matching`: agreement of two labellings up to a renaming
  of one of them (the Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``), for a
  categorical code against the classes it should capture.
* :func:`linear_probe`: the accuracy of a multinomial logistic regression predicting labels from
  codes (scikit-learn; standardised features; fit on training codes, scored on test codes).

numpy only at import; scipy and scikit-learn are imported by the functions that use them.

>>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
>>> class_coverage(probs)["covered"], round(mean_confidence(probs), 4)
(2, 0.8)
>>> matched_accuracy([1, 1, 0, 0], [0, 0, 1, 1])
1.0
"""

from __future__ import annotations

import warnings

import numpy as np

from .common import DataError, EvaluationError, _to_numpy, as_labels

__all__ = ["COVERAGE_THRESHOLD", "best_matching", "class_coverage", "class_shares", "frechet_distance",
           "frechet_distance_of", "gaussian_stats", "linear_probe", "matched_accuracy", "mean_confidence"]

#: A class is covered when at least this share of the samples is predicted in it.
COVERAGE_THRESHOLD = 0.05


# -- samples: classes and confidence -----------------------------------------------------------------

def _probabilities(probs) -> np.ndarray:
    p = _to_numpy(probs, "probabilities").astype(np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise DataError("bad class probabilities", expected="an array (N, K) with N >= 1 rows and K >= 2 classes",
                        given=f"shape {p.shape}", fix="pass the classifier's probabilities, one row per image")
    if not np.isfinite(p).all() or p.min() < 0 or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise DataError("the rows are not probability vectors", expected="non-negative rows summing to 1",
                        given=f"row sums in [{p.sum(axis=1).min():g}, {p.sum(axis=1).max():g}], "
                              f"minimum {p.min():g}", fix="apply a softmax to logits first")
    return p


def class_shares(labels_or_probs, n_classes: int | None = None) -> np.ndarray:
    """The share of each class among the predicted labels (the argmax of each row of
    probabilities, or the labels themselves).

    >>> class_shares([0, 0, 2, 1]).tolist()
    [0.5, 0.25, 0.25]
    >>> class_shares(np.array([[0.2, 0.8], [0.6, 0.4]])).tolist()
    [0.5, 0.5]
    """
    arr = _to_numpy(labels_or_probs, "labels")
    if arr.ndim == 2:
        p = _probabilities(arr)
        labels, k = p.argmax(axis=1), p.shape[1]
    else:
        labels = as_labels(arr)
        if labels.size == 0:
            raise DataError("no labels", expected="at least one label", given="an empty array",
                            fix="pass the predicted label of every sample")
        k = int(labels.max()) + 1
    if n_classes is not None:
        if labels.size and int(labels.max()) >= n_classes:
            raise DataError("a label outside the classes", expected=f"labels 0..{n_classes - 1}",
                            given=f"a label {int(labels.max())}", fix="pass n_classes large enough")
        k = n_classes
    return np.bincount(labels, minlength=k) / labels.size


def class_coverage(labels_or_probs, n_classes: int | None = None, threshold: float = COVERAGE_THRESHOLD) -> dict:
    """The classes the samples cover: ``{"covered": count, "shares": [share of each class],
    "threshold": threshold}``, a class counting when its share of the predicted labels is at
    least ``threshold`` (5% by default: a model that draws one digit in 20 draws it).

    >>> c = class_coverage([0] * 18 + [1] * 1 + [2] * 1, n_classes=4)
    >>> c["covered"], c["shares"]
    (3, [0.9, 0.05, 0.05, 0.0])
    """
    if not 0 < threshold <= 1:
        raise EvaluationError("bad coverage threshold", expected="a share in (0, 1]", given=repr(threshold),
                              fix="pass threshold=0.05")
    shares = class_shares(labels_or_probs, n_classes)
    # count / n and the threshold are both correctly rounded: an exact tie (1 in 20) compares equal
    return {"covered": int(np.sum(shares >= threshold)), "shares": [float(s) for s in shares],
            "threshold": float(threshold)}


def mean_confidence(probs) -> float:
    """The mean over images of the classifier's largest class probability.

    >>> mean_confidence([[0.5, 0.5], [1.0, 0.0]])
    0.75
    """
    return float(_probabilities(probs).max(axis=1).mean())


# -- Fréchet distance -----------------------------------------------------------------------------------

def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased, rows are observations) of ``features`` ``(N, d)``, N >= 2.

    >>> mu, sigma = gaussian_stats([[0.0, 1.0], [2.0, 3.0]])
    >>> mu.tolist(), sigma.tolist()
    ([1.0, 2.0], [[2.0, 2.0], [2.0, 2.0]])
    """
    f = _to_numpy(features, "features").astype(np.float64)
    if f.ndim != 2 or f.shape[0] < 2 or f.shape[1] < 1:
        raise DataError("bad features", expected="an array (N, d) with N >= 2 rows",
                        given=f"shape {f.shape}", fix="pass at least two feature vectors, one row each")
    if not np.isfinite(f).all():
        raise DataError("features contain NaN or infinite values", expected="finite features",
                        given=f"{int((~np.isfinite(f)).sum())} non-finite values", fix="check the images")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix (scipy's eigh;
    eigenvalues below 0 from rounding are clipped)."""
    from scipy.linalg import eigh

    w, v = eigh(sigma)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """The squared Fréchet (2-Wasserstein) distance between N(μ1, Σ1) and N(μ2, Σ2):
    ‖μ1 − μ2‖² + tr(Σ1) + tr(Σ2) − 2 tr((Σ1 Σ2)^{1/2}).

    tr((Σ1 Σ2)^{1/2}) is computed as tr((Σ1^{1/2} Σ2 Σ1^{1/2})^{1/2}) (the two matrices are
    similar), the sum of the square roots of the eigenvalues of a symmetric positive
    semi-definite matrix (``scipy.linalg.eigh``). This is exact where ``sqrtm(Σ1 Σ2)`` of a
    non-symmetric product needs the usual FID guards (an ε on the diagonal, dropping an
    imaginary part) when a covariance is singular, e.g. with fewer samples than features.
    Covariances must be symmetric positive semi-definite.

    >>> frechet_distance([0.0], [[4.0]], [3.0], [[1.0]])  # 3² + (2 - 1)²
    10.0
    """
    m1, m2 = (np.atleast_1d(_to_numpy(m, "mean").astype(np.float64)) for m in (mu1, mu2))
    s1, s2 = (np.atleast_2d(_to_numpy(s, "covariance").astype(np.float64)) for s in (sigma1, sigma2))
    d = m1.shape[0]
    if m1.shape != (d,) or m2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise DataError("means and covariances of different dimensions", expected="two means (d,) and two (d, d) "
                        "covariances with the same d", given=f"{m1.shape}, {s1.shape}, {m2.shape}, {s2.shape}",
                        fix="compute both with gaussian_stats on features of the same extractor")
    for name, s in (("sigma1", s1), ("sigma2", s2)):
        if not np.isfinite(s).all() or not np.allclose(s, s.T, rtol=1e-6, atol=1e-9 * max(1.0, np.abs(s).max())):
            raise DataError(f"{name} is not a symmetric matrix", expected="a covariance matrix", given="an asymmetric "
                            "or non-finite matrix", fix="pass np.cov(features, rowvar=False)")
    if not (np.isfinite(m1).all() and np.isfinite(m2).all()):
        raise DataError("a mean is not finite", expected="finite means", given="NaN or infinite values",
                        fix="check the features")
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    root1 = _psd_sqrt(s1)
    from scipy.linalg import eigvalsh

    inner = root1 @ s2 @ root1
    tr_cross = float(np.sqrt(np.clip(eigvalsh((inner + inner.T) / 2), 0.0, None)).sum())
    diff = m1 - m2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_cross)
    return max(value, 0.0)


def frechet_distance_of(features_a, features_b) -> float:
    """The Fréchet distance between Gaussians fitted (:func:`gaussian_stats`) to two feature sets.

    >>> a = np.array([[0.0], [2.0]]); b = a + 1.0
    >>> frechet_distance_of(a, b)
    1.0
    """
    return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b))


# -- codes matched to classes ---------------------------------------------------------------------------

def _as_predictions(predicted, what: str) -> np.ndarray:
    arr = _to_numpy(predicted, what)
    if arr.ndim == 2:  # scores or probabilities over codes: the argmax
        if arr.shape[1] < 1 or arr.dtype.kind not in "biuf":
            raise DataError(f"bad {what}", expected="labels (N,) or scores (N, K)", given=f"{arr.dtype} {arr.shape}",
                            fix="pass one code per example")
        return arr.argmax(axis=1).astype(np.int64)
    return as_labels(arr, what=what)


def best_matching(predicted, target) -> tuple[dict[int, int], float]:
    """The renaming of the predicted codes onto target labels that agrees most often (each code
    to at most one label and each label to at most one code; Hungarian algorithm), and the
    accuracy it reaches. ``predicted`` may be labels ``(N,)`` or scores ``(N, K)`` (argmax).

    >>> best_matching([2, 2, 0, 1], [5, 5, 3, 4])
    ({0: 3, 1: 4, 2: 5}, 1.0)
    """
    from scipy.optimize import linear_sum_assignment

    pred = _as_predictions(predicted, "predicted codes")
    true = as_labels(target, what="target labels")
    if pred.shape[0] != true.shape[0] or pred.size == 0:
        raise DataError("predicted codes and target labels do not pair up",
                        expected="as many predicted codes as target labels, at least one",
                        given=f"{pred.shape[0]} codes, {true.shape[0]} labels",
                        fix="pass one code per labelled example")
    codes, pred_idx = np.unique(pred, return_inverse=True)
    labels, true_idx = np.unique(true, return_inverse=True)
    counts = np.zeros((codes.size, labels.size), dtype=np.int64)
    np.add.at(counts, (pred_idx, true_idx), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    mapping = {int(codes[r]): int(labels[c]) for r, c in zip(rows, cols)}
    return mapping, float(counts[rows, cols].sum() / pred.size)


def matched_accuracy(predicted, target) -> float:
    """The accuracy of ``predicted`` codes against ``target`` labels under the best one-to-one
    renaming of the codes (:func:`best_matching`): 1 for a permuted labelling, 1/K for codes
    independent of K balanced classes (in expectation, plus the matching's optimism).

    >>> matched_accuracy([0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 0, 0])  # {0: 0, 1: 1} gets 4 of 6
    0.6666666666666666
    """
    return best_matching(predicted, target)[1]


# -- linear probe ---------------------------------------------------------------------------------------

def _codes(z, what: str) -> np.ndarray:
    arr = _to_numpy(z, what)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.dtype.kind not in "biuf":
        raise DataError(f"bad {what}", expected="codes (N, d) of numbers", given=f"{arr.dtype} of shape {arr.shape}",
                        fix="pass one code vector per example")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise DataError(f"{what} contain NaN or infinite values", expected="finite codes",
                        given=f"{int((~np.isfinite(arr)).sum())} non-finite values", fix="check the encoder")
    return arr


def linear_probe(z_train, y_train, z_test, y_test, *, c: float = 1.0, max_iter: int = 2000, seed: int = 0) -> dict:
    """How linearly the codes hold the labels: a multinomial logistic regression (scikit-learn,
    L2 penalty of strength 1/``c``, lbfgs) on standardised codes (scaled by the training codes'
    mean and deviation), fit on the training codes and scored on the test codes.

    Returns ``{"accuracy", "chance", "converged", "n_train", "n_test", "dim"}``: ``chance`` is the
    test accuracy of always answering the most frequent training label; ``converged`` is False
    when lbfgs stopped at ``max_iter`` (the accuracy is then a lower bound of the probe's).

    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 300); z = np.eye(3)[y] + 0.1 * rng.normal(size=(300, 3))
    >>> linear_probe(z[:200], y[:200], z[200:], y[200:])["accuracy"]
    1.0
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ztr, zte = _codes(z_train, "training codes"), _codes(z_test, "test codes")
    ytr, yte = as_labels(y_train, ztr.shape[0], "training labels"), as_labels(y_test, zte.shape[0], "test labels")
    if ztr.shape[1] != zte.shape[1]:
        raise DataError("training and test codes of different sizes", expected="the same code dimension",
                        given=f"{ztr.shape[1]} and {zte.shape[1]}", fix="encode both with the same encoder")
    if np.unique(ytr).size < 2:
        raise DataError("the training labels have one class", expected="at least two classes to tell apart",
                        given=f"only label {int(ytr[0])}", fix="pass labelled training codes of several classes")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter, random_state=seed))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(ztr, ytr)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    for w in caught:  # anything else is the caller's business
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    majority = np.bincount(ytr).argmax()
    return {"accuracy": float((model.predict(zte) == yte).mean()), "chance": float((yte == majority).mean()),
            "converged": bool(converged), "n_train": int(ztr.shape[0]), "n_test": int(zte.shape[0]),
            "dim": int(ztr.shape[1])}
