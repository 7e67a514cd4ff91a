"""Metrics independent of the training objective: the one place that judges samples and codes.

A digit classifier trained once on the dataset's training images (MNIST 28x28, or scikit-learn's
8x8 digits for smoke runs and tests) and cached on disk is the judge of samples; a linear probe
judges codes. Nothing here sees a model's loss.

* samples x ~ p(x): :func:`score_samples` (classes covered, mean confidence, Fréchet distance in
  the classifier's feature space), each next to the same numbers for real test images
  (:func:`reference`); :func:`format_table` for reports; ``lagfam score FILE.npy`` on the command line;
* encoders: :func:`probe_encoder` (linear probe accuracy of the label from z);
* InfoGAN: :func:`code_recovery` (generated digits vs their categorical code) and
  :func:`encoder_code_accuracy` (predicted codes of real images vs their labels), both matched by
  the Hungarian algorithm;
* CycleGAN/DiscoGAN: :func:`translation_kept`, with the second domains of :mod:`.domains`;
* the metrics on plain arrays (:mod:`.metrics`): :func:`class_coverage`, :func:`mean_confidence`,
  :func:`frechet_distance`, :func:`matched_accuracy`, :func:`linear_probe`;
* the judge: :func:`load_classifier` (``probs``, ``features``, ``predict``, ``test_accuracy``).

The classifier and the reference statistics are cached in ``$LAGFAM_CACHE`` (else
``$XDG_CACHE_HOME/lagrangian_family``, else ``~/.cache/lagrangian_family``), keyed by the data's
checksum and the code's version, written atomically and checksummed (:mod:`.cache`).

Importing this package imports numpy only; torch is imported when a classifier or an encoder is used.

>>> from lagrangian_family import evaluate
>>> evaluate.frechet_distance([0.0, 0.0], [[1.0, 0.0], [0.0, 4.0]], [1.0, 0.0], [[1.0, 0.0], [0.0, 1.0]])
2.0
"""

from __future__ import annotations

from .cache import CACHE_ENV, CacheWarning, cache_dir
from .common import DATASETS, EvaluationError, as_images, load_split
from .domains import DOMAINS, from_domain, to_domain
from .metrics import (
    COVERAGE_THRESHOLD,
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
from .score import (
    code_recovery,
    encode,
    encoder_code_accuracy,
    format_table,
    probe_encoder,
    reference,
    reference_stats,
    score_samples,
    translation_kept,
)

__all__ = [
    "CACHE_ENV",
    "COVERAGE_THRESHOLD",
    "DATASETS",
    "DOMAINS",
    "CacheWarning",
    "DigitClassifier",
    "EvaluationError",
    "as_images",
    "best_matching",
    "cache_dir",
    "class_coverage",
    "class_shares",
    "code_recovery",
    "encode",
    "encoder_code_accuracy",
    "format_table",
    "frechet_distance",
    "frechet_distance_of",
    "from_domain",
    "gaussian_stats",
    "linear_probe",
    "load_classifier",
    "load_split",
    "matched_accuracy",
    "mean_confidence",
    "probe_encoder",
    "reference",
    "reference_stats",
    "score_samples",
    "to_domain",
    "translation_kept",
]

_TORCH_NAMES = {"load_classifier", "DigitClassifier"}


def __getattr__(name: str):
    """``load_classifier`` and ``DigitClassifier`` import torch: loaded on first use."""
    if name in _TORCH_NAMES:
        from . import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
