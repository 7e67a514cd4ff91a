"""Scores of a trained model that know nothing of its training objective.

Every score here is computed by the digit classifier of :mod:`.classifier` (trained once on the
dataset's training images, cached) or by a linear probe, from images, codes and labels alone:

* :func:`score_samples`: for samples x ~ p(x), the classes covered (a class counts when at least
  5% of the samples are predicted in it), the mean classifier confidence (mean largest class
  probability) and the Fréchet distance between Gaussians fitted to the classifier's features
  (its penultimate layer) of the samples and of the **training images**; each also for **real
  test images** (:func:`reference`), the same number of them as there are samples (up to the
  whole test split), so that the Fréchet distances share their small-sample bias.
* :func:`probe_encoder`: the accuracy of a linear probe predicting the label from z (the mean of
  q(z|x)) on test images, fit on training images.
* :func:`code_recovery` (InfoGAN): the classifier's labels of images generated from known
  categorical codes, matched to the codes by the Hungarian algorithm; and
  :func:`encoder_code_accuracy`: an encoder's predicted codes of real test images matched to
  their true labels the same way.
* :func:`translation_kept` (CycleGAN, DiscoGAN): the share of translations that keep the digit
  of their source, judged by the classifier after bringing the translation back to the digit
  form of its domain (:mod:`.domains`).
* :func:`format_table`: the sample scores with their reference as a Markdown table for reports.

Torch is imported only when a classifier or an encoder is used.

>>> import tempfile
>>> from lagrangian_family.evaluate.common import load_split
>>> cache = tempfile.mkdtemp()
>>> real = load_split("digits").x_test
>>> s = score_samples(real[:200], "digits", cache_dir=cache)
>>> s["classes_covered"], round(s["confidence_ratio"], 2)
(10, 1.0)
>>> noise = np.random.default_rng(0).random((200, 64))
>>> score_samples(noise, "digits", cache_dir=cache)["frechet_distance"] > 10 * s["frechet_distance"]
True
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping

import numpy as np

from .cache import cache_dir as _cache_dir
from .cache import cached_bytes
from .common import DataError, EvaluationError, as_images, as_labels, dataset_spec, load_split
from .domains import domain_name, from_domain
from .metrics import (
    COVERAGE_THRESHOLD,
    class_coverage,
    frechet_distance,
    gaussian_stats,
    linear_probe,
    mean_confidence,
)
from .metrics import best_matching as _best_matching

__all__ = ["REFERENCE_VERSION", "code_recovery", "encode", "encoder_code_accuracy", "format_table",
           "probe_encoder", "reference", "reference_stats", "score_samples", "translation_kept"]

#: Version of the reference statistics' code: part of their cache key.
REFERENCE_VERSION = 1

#: Training images the linear probe is fit on by default (MNIST: a fixed subset of 10,000; digits: all 1,497).
PROBE_TRAIN = 10_000


def _classifier(dataset: str, data_dir, cache_dir, progress):
    from .classifier import load_classifier

    return load_classifier(dataset, data_dir=data_dir, cache_dir=cache_dir, progress=progress)


# -- the reference: real images ------------------------------------------------------------------------

_REFERENCES: dict[tuple[str, str], dict[str, np.ndarray]] = {}


def reference_stats(dataset: str = "mnist", *, data_dir=None, cache_dir=None,
                    progress: Callable[[str], None] | None = None) -> dict[str, np.ndarray]:
    """The classifier's view of the real data, computed once and cached: the mean and covariance
    of its features on all training images (``train_mu``, ``train_sigma``), and its features,
    probabilities and the true labels of the test images in a fixed order (a seed-0
    permutation: ``test_features``, ``test_probs``, ``test_labels``)."""
    clf = _classifier(dataset, data_dir, cache_dir, progress)
    memo = (clf.sha256, str(_cache_dir(cache_dir).resolve()))
    if memo in _REFERENCES:
        return _REFERENCES[memo]
    path = _cache_dir(cache_dir) / f"{clf.dataset}-reference-v{REFERENCE_VERSION}-{clf.sha256[:16]}.npz"

    def build() -> bytes:
        split = load_split(clf.dataset, data_dir)
        mu, sigma = gaussian_stats(clf.features(split.x_train))
        order = np.random.default_rng(0).permutation(split.x_test.shape[0])
        probs, feats = clf.probs_and_features(split.x_test[order])
        buf = io.BytesIO()
        np.savez(buf, train_mu=mu, train_sigma=sigma, test_features=feats, test_probs=probs,
                 test_labels=split.y_test[order])
        return buf.getvalue()

    def valid(payload: bytes) -> bool:
        try:
            with np.load(io.BytesIO(payload), allow_pickle=False) as z:
                return {"train_mu", "train_sigma", "test_features", "test_probs", "test_labels"} <= set(z.files)
        except Exception:  # an unreadable payload is rebuilt
            return False

    payload, _ = cached_bytes(path, build, valid=valid)
    with np.load(io.BytesIO(payload), allow_pickle=False) as z:
        stats = {k: z[k] for k in z.files}
    _REFERENCES[memo] = stats
    return stats


def reference(dataset: str = "mnist", n: int | None = None, *, data_dir=None, cache_dir=None,
              progress: Callable[[str], None] | None = None) -> dict:
    """The sample scores of real test images: the first ``n`` of a fixed permutation of the test
    split (all of it when ``n`` is None or larger), scored like samples against the training
    images' features; also the classifier's accuracy on them.

    Returns ``{"n", "classes_covered", "class_shares", "confidence", "frechet_distance", "accuracy"}``.

    >>> import tempfile
    >>> r = reference("digits", cache_dir=tempfile.mkdtemp())
    >>> r["n"], r["classes_covered"], r["accuracy"] > 0.95
    (300, 10, True)
    """
    stats = reference_stats(dataset, data_dir=data_dir, cache_dir=cache_dir, progress=progress)
    total = stats["test_labels"].shape[0]
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2):
        raise EvaluationError("bad number of reference images", expected="an integer >= 2, or None for all",
                              given=repr(n), fix="pass n=len(samples)")
    m = total if n is None else min(int(n), total)
    probs, feats = stats["test_probs"][:m], stats["test_features"][:m]
    cov = class_coverage(probs, n_classes=dataset_spec(dataset).n_classes)
    return {"n": m, "classes_covered": cov["covered"], "class_shares": cov["shares"],
            "confidence": mean_confidence(probs),
            "frechet_distance": frechet_distance(*gaussian_stats(feats), stats["train_mu"], stats["train_sigma"]),
            "accuracy": float((probs.argmax(axis=1) == stats["test_labels"][:m]).mean())}


# -- samples ----------------------------------------------------------------------------------------------

def score_samples(samples, dataset: str = "mnist", *, data_dir=None, cache_dir=None,
                  progress: Callable[[str], None] | None = None) -> dict:
    """Score samples x ~ p(x) (``(N, d)`` or ``(N, side, side)`` intensities in [0, 1], N >= 2)
    with the dataset's digit classifier, next to real test images.

    Returns a dict of plain numbers: ``dataset``, ``n``; ``classes_covered`` (classes with at
    least ``coverage_threshold`` = 5% of the predicted labels) and ``class_shares`` (the share
    of each class); ``confidence`` (mean largest class probability) and ``confidence_ratio``
    (over the real images'); ``frechet_distance`` (classifier features of the samples against
    those of the training images); ``reference`` (the same for ``n`` real test images,
    :func:`reference`); ``classifier`` (``test_accuracy``, ``key``).
    """
    spec = dataset_spec(dataset)
    x = as_images(samples, spec.name)
    if x.shape[0] < 2:
        raise DataError("too few samples for a Fréchet distance", expected="at least 2 samples (10,000 is usual)",
                        given=f"{x.shape[0]} sample", fix="draw more samples")
    clf = _classifier(spec.name, data_dir, cache_dir, progress)
    stats = reference_stats(spec.name, data_dir=data_dir, cache_dir=cache_dir)
    probs, feats = clf.probs_and_features(x)
    cov = class_coverage(probs, n_classes=spec.n_classes)
    ref = reference(spec.name, x.shape[0], data_dir=data_dir, cache_dir=cache_dir)
    confidence = mean_confidence(probs)
    return {
        "dataset": spec.name,
        "n": int(x.shape[0]),
        "classes_covered": cov["covered"],
        "class_shares": cov["shares"],
        "coverage_threshold": COVERAGE_THRESHOLD,
        "confidence": confidence,
        "confidence_ratio": confidence / ref["confidence"],
        "frechet_distance": frechet_distance(*gaussian_stats(feats), stats["train_mu"], stats["train_sigma"]),
        "reference": ref,
        "classifier": {"test_accuracy": clf.test_accuracy, "key": clf.key},
    }


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if v != v:
        return "nan"
    return f"{v:.3g}" if abs(v) >= 100 else f"{v:.3f}"


def format_table(scores: Mapping, extra: Mapping[str, tuple] | None = None) -> str:
    """A Markdown table of :func:`score_samples`' result: each metric for the samples and for real
    test images, then the share of each class. ``extra`` adds rows ``{name: (value, reference)}``
    (a reference of None prints as a dash), e.g. a linear probe's accuracy.

    >>> print(format_table({"dataset": "digits", "n": 4, "classes_covered": 2, "class_shares": [0.5, 0.5],
    ...     "coverage_threshold": 0.05, "confidence": 0.9, "confidence_ratio": 0.9, "frechet_distance": 3.0,
    ...     "reference": {"n": 4, "classes_covered": 2, "class_shares": [0.25, 0.75], "confidence": 1.0,
    ...     "frechet_distance": 0.5, "accuracy": 1.0}, "classifier": {"test_accuracy": 1.0, "key": "k"}}))
    | metric (digits, classifier test accuracy 1.000) | samples | real test images |
    |---|---|---|
    | images scored | 4 | 4 |
    | classes covered (share ≥ 5%) | 2 of 2 | 2 of 2 |
    | mean classifier confidence | 0.900 | 1.000 |
    | confidence relative to real images | 0.900 | 1.000 |
    | Fréchet distance to training images (classifier features) | 3.000 | 0.500 |
    <BLANKLINE>
    | class share | 0 | 1 |
    |---|---|---|
    | samples | 0.500 | 0.500 |
    | real test images | 0.250 | 0.750 |
    """
    try:
        ref = scores["reference"]
        k = len(scores["class_shares"])
        rows = [
            ("images scored", scores["n"], ref["n"]),
            (f"classes covered (share ≥ {scores['coverage_threshold']:.0%})",
             f"{scores['classes_covered']} of {k}", f"{ref['classes_covered']} of {k}"),
            ("mean classifier confidence", scores["confidence"], ref["confidence"]),
            ("confidence relative to real images", scores["confidence_ratio"], 1.0),
            ("Fréchet distance to training images (classifier features)", scores["frechet_distance"],
             ref["frechet_distance"]),
        ]
        head = f"metric ({scores['dataset']}, classifier test accuracy {scores['classifier']['test_accuracy']:.3f})"
        shares, ref_shares = scores["class_shares"], ref["class_shares"]
    except (KeyError, TypeError) as e:
        raise EvaluationError("format_table needs the result of score_samples", expected="the dict score_samples "
                              "returns", given=f"a {type(scores).__name__} without {e}",
                              fix="pass score_samples(samples, dataset)") from e
    for name, pair in (extra or {}).items():
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise EvaluationError(f"bad extra row {name!r}", expected="(value, reference or None)",
                                  given=repr(pair), fix=f"pass extra={{{name!r}: (0.93, None)}}")
        rows.append((name, *pair))
    out = [f"| {head} | samples | real test images |", "|---|---|---|"]
    out += [f"| {name} | {v if isinstance(v, str) else _fmt(v)} | {r if isinstance(r, str) else _fmt(r)} |"
            for name, v, r in rows]
    out += ["", "| class share | " + " | ".join(str(i) for i in range(k)) + " |", "|---" * (k + 1) + "|",
            "| samples | " + " | ".join(_fmt(s) for s in shares) + " |",
            "| real test images | " + " | ".join(_fmt(s) for s in ref_shares) + " |"]
    return "\n".join(out)


# -- encoders: linear probe and codes ---------------------------------------------------------------------

def encode(encoder: Callable, images, *, batch_size: int = 1000) -> np.ndarray:
    """Codes of ``images`` (a float array ``(N, d)``) by ``encoder``, as a float64 array ``(N, k)``:
    the mean of a ``torch.distributions.Distribution`` output (the mean of q(z|x)), a tensor
    output as it is (an implicit encoder's z), the first element of a tuple. No gradients; a
    ``torch.nn.Module`` runs in evaluation mode and is put back as it was; inputs go to the
    device and dtype of its first parameter.

    >>> import torch
    >>> lin = torch.nn.Linear(4, 2)
    >>> _ = torch.nn.init.ones_(lin.weight), torch.nn.init.zeros_(lin.bias)
    >>> encode(lin, np.ones((3, 4))).tolist()
    [[4.0, 4.0], [4.0, 4.0], [4.0, 4.0]]
    """
    import torch
    from torch.distributions import Distribution

    if not callable(encoder):
        raise EvaluationError("the encoder is not callable", expected="a torch.nn.Module or a function of a batch",
                              given=type(encoder).__name__, fix="pass the trained encoder q(z|x)")
    x = np.asarray(images, dtype=np.float32)
    device, dtype = torch.device("cpu"), torch.float32
    params = list(encoder.parameters()) if isinstance(encoder, torch.nn.Module) else []
    if params:
        device, dtype = params[0].device, params[0].dtype if params[0].is_floating_point() else torch.float32
    was_training = encoder.training if isinstance(encoder, torch.nn.Module) else None
    if was_training is not None:
        encoder.eval()
    codes = []
    try:
        with torch.no_grad():
            for i in range(0, x.shape[0], batch_size):
                out = encoder(torch.from_numpy(x[i:i + batch_size]).to(device=device, dtype=dtype))
                if isinstance(out, tuple):
                    out = out[0]
                if isinstance(out, Distribution):
                    try:
                        out = out.mean
                    except NotImplementedError:
                        raise EvaluationError("the encoder's distribution has no mean",
                                              expected="q(z|x) with a mean (Normal, Independent, ...) or a tensor",
                                              given=type(out).__name__,
                                              fix="wrap the encoder to return a point code, e.g. a sample") from None
                if not isinstance(out, torch.Tensor):
                    raise EvaluationError("the encoder returned neither a distribution nor a tensor",
                                          expected="a torch.distributions.Distribution or a torch.Tensor",
                                          given=type(out).__name__, fix="pass the encoder q(z|x) of the model")
                codes.append(out.reshape(out.shape[0], -1).detach().to("cpu", torch.float64).numpy())
    finally:
        if was_training:
            encoder.train()
    return np.concatenate(codes)


def _subset(n_total: int, n: int | None, what: str) -> np.ndarray:
    if n is None or n >= n_total:
        return np.arange(n_total)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise EvaluationError(f"bad {what}", expected="an integer >= 2, or None for all", given=repr(n),
                              fix=f"pass {what}=None")
    return np.sort(np.random.default_rng(0).permutation(n_total)[:n])


def probe_encoder(encoder: Callable, dataset: str = "mnist", *, n_train: int | None = PROBE_TRAIN,
                  n_test: int | None = None, preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
                  data_dir=None, seed: int = 0) -> dict:
    """The accuracy of a linear probe predicting the digit from the code z of an encoder:
    :func:`encode` ``n_train`` training images (a fixed subset; all when None) and ``n_test``
    test images (all by default), then :func:`~.metrics.linear_probe` (multinomial logistic
    regression on standardised codes, fixed seed). Images are intensities in [0, 1];
    ``preprocess`` maps them first (e.g. ``lambda x: binarize(x, "fixed")`` for an encoder
    trained on binary images). Returns the probe's dict (``accuracy``, ``chance``, ...).

    >>> import torch
    >>> torch.manual_seed(0)
    <torch._C.Generator object at ...>
    >>> probe_encoder(torch.nn.Linear(64, 16), "digits")["accuracy"] > 0.8  # a random linear map keeps a lot
    True
    """
    spec = dataset_spec(dataset)
    split = load_split(spec.name, data_dir)
    tr, te = _subset(split.x_train.shape[0], n_train, "n_train"), _subset(split.x_test.shape[0], n_test, "n_test")
    xtr, xte = split.x_train[tr], split.x_test[te]
    if preprocess is not None:
        xtr, xte = np.asarray(preprocess(xtr)), np.asarray(preprocess(xte))
    return linear_probe(encode(encoder, xtr), split.y_train[tr], encode(encoder, xte), split.y_test[te], seed=seed)


def code_recovery(images, codes, dataset: str = "mnist", *, data_dir=None, cache_dir=None) -> dict:
    """InfoGAN: how well the categorical code is recovered by the digits drawn. ``images`` were
    generated with categorical code ``codes`` (one integer per image, or a one-hot/score row);
    the classifier labels each image and the codes are matched to labels by the Hungarian
    algorithm. Returns ``{"accuracy", "mapping" (code -> digit), "n"}``: accuracy 1 when each
    code value draws one digit of its own, about 1/10 when the code is ignored.
    """
    spec = dataset_spec(dataset)
    x = as_images(images, spec.name)
    c = np.asarray(codes)
    c = c.argmax(axis=1) if c.ndim == 2 else c
    c = as_labels(c, x.shape[0], "codes")
    labels = _classifier(spec.name, data_dir, cache_dir, None).predict(x)
    mapping, accuracy = _best_matching(c, labels)
    return {"accuracy": accuracy, "mapping": mapping, "n": int(x.shape[0])}


def encoder_code_accuracy(code_fn: Callable, dataset: str = "mnist", *, n_test: int | None = None,
                          preprocess: Callable[[np.ndarray], np.ndarray] | None = None, data_dir=None) -> float:
    """InfoGAN's other direction: ``code_fn`` predicts the categorical code of real test images
    (a function or module of a float batch returning codes ``(N,)`` or scores ``(N, K)``, e.g.
    the categorical part of q(z|x)); the codes are matched to the true labels by the Hungarian
    algorithm and the matched accuracy is returned.

    >>> import torch
    >>> from lagrangian_family.evaluate.common import load_split
    >>> s = load_split("digits")
    >>> oracle = {tuple(x.tolist()): (int(y) + 3) % 10 for x, y in zip(s.x_test, s.y_test)}
    >>> encoder_code_accuracy(lambda b: torch.tensor([oracle[tuple(r.tolist())] for r in b]), "digits")
    1.0
    """
    spec = dataset_spec(dataset)
    split = load_split(spec.name, data_dir)
    te = _subset(split.x_test.shape[0], n_test, "n_test")
    x = split.x_test[te]
    if preprocess is not None:
        x = np.asarray(preprocess(x))
    codes = encode(code_fn, x)
    pred = codes[:, 0].round().astype(np.int64) if codes.shape[1] == 1 else codes.argmax(axis=1)
    return _best_matching(pred, split.y_test[te])[1]


# -- translations -----------------------------------------------------------------------------------------

def translation_kept(translated, source_labels, dataset: str = "mnist", *, domain: str = "original",
                     data_dir=None, cache_dir=None) -> float:
    """CycleGAN/DiscoGAN: the share of translations that keep the digit of their source.

    ``translated`` are images of the target ``domain`` (a name of :data:`~.domains.DOMAINS`:
    ``"original"`` for translations into plain digits, ``"invert"``, ``"rot90"``, ...);
    each is brought back to the digit form (inverted back, rotated back) and labelled by the
    dataset's classifier, which is compared with the label of the source image it was translated
    from. About 0.1 for a translation that ignores its source.

    >>> import tempfile
    >>> from lagrangian_family.evaluate.common import load_split
    >>> from lagrangian_family.evaluate.domains import to_domain
    >>> s = load_split("digits")
    >>> translation_kept(to_domain(s.x_test, "invert", side=8), s.y_test, "digits", domain="invert",
    ...                  cache_dir=tempfile.mkdtemp()) > 0.95
    True
    """
    spec = dataset_spec(dataset)
    domain = domain_name(domain)
    x = from_domain(as_images(translated, spec.name), domain, spec.side)
    y = as_labels(source_labels, x.shape[0], "source labels")
    labels = _classifier(spec.name, data_dir, cache_dir, None).predict(np.clip(x, 0.0, 1.0))
    return float((labels == y).mean())
