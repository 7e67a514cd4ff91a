"""Named data sources: what a model file stores instead of data.

A prior known only through samples (CycleGAN's and DiscoGAN's second image domain,
:class:`~lagrangian_family.backends.torch.components.DataSamplerPrior`) is a set of images. A
model file does not hold them: it holds a **source**, a small JSON-serialisable description
such as ``{"dataset": "mnist", "split": "train", "transform": "rot90"}``, and
:func:`resolve_source` turns it back into the images when the model is loaded.

* ``dataset``: a name registered with :func:`register_dataset`. Built in: ``"mnist"`` (the IDX
  files, :func:`lagrangian_family.data.load_mnist`; splits ``train`` and ``test``) and
  ``"digits"`` (scikit-learn's 8x8 digits; splits ``all``, and ``train``/``test``: the fixed
  shuffle of the experiments, the first 300 images for test).
* ``split``: passed to the dataset's loader (default ``"train"``).
* ``transform``: a name registered with :func:`register_transform`, or a list of them applied
  in order (default none). Built in: ``"identity"`` and ``"invert"`` (1 - x: the second domain
  of the recipes' CycleGAN and DiscoGAN). Other second-domain transforms (rotations) are
  registered by the code that defines them.
* any other key is passed to the dataset's loader as a keyword argument.

Every loader returns float32 images in [0, 1], one flattened image per row. Importing this
module imports numpy only.

>>> import numpy as np
>>> @register_transform("halve")
... def halve(images):
...     return images / 2
>>> x = resolve_source({"dataset": "digits", "split": "all", "transform": ["identity", "halve"]})
>>> x.shape, x.dtype, float(x.max())
((1797, 64), dtype('float32'), 0.5)
>>> _ = TRANSFORMS.pop("halve")
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

import numpy as np

from lagrangian_family.data import DataError
from lagrangian_family.errors import closest

__all__ = ["DATASETS", "TRANSFORMS", "register_dataset", "register_transform", "check_source", "resolve_source"]

#: name -> loader ``(split, data_dir, **options) -> float32 array (n, d) in [0, 1]``
DATASETS: dict[str, Callable[..., np.ndarray]] = {}
#: name -> ``images (n, d) -> images (n, d)``
TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {}


def register_dataset(name: str):
    """Decorator: register a loader ``(split, data_dir, **options) -> (n, d) float32 in [0, 1]``."""

    def deco(loader):
        DATASETS[name] = loader
        return loader

    return deco


def register_transform(name: str):
    """Decorator: register a transform ``images (n, d) -> images (n, d)`` of flattened images."""

    def deco(fn):
        TRANSFORMS[name] = fn
        return fn

    return deco


def check_source(source) -> dict:
    """A copy of ``source`` if it is a valid description (a JSON-serialisable dict naming a
    ``dataset``), else a :class:`~lagrangian_family.data.DataError`. The names are checked
    when the source is resolved, so that transforms may be registered later.

    >>> check_source({"dataset": "mnist", "split": "test"})
    {'dataset': 'mnist', 'split': 'test'}
    """
    example = '{"dataset": "mnist", "split": "train", "transform": "identity"}'
    if not isinstance(source, Mapping) or not isinstance(source.get("dataset"), str):
        text = repr(source)
        raise DataError("a data source is not a description of a dataset",
                        expected=f"a dict with a 'dataset' name, e.g. {example}",
                        given=f"{type(source).__name__} {text if len(text) <= 60 else text[:57] + '...'}",
                        fix="describe where the images come from, or pass source=None")
    try:
        text = json.dumps({str(k): v for k, v in source.items()})
    except (TypeError, ValueError) as e:
        raise DataError("a data source must be JSON-serialisable (a model file stores it as text)",
                        expected="strings, numbers, booleans, lists and dicts", given=f"{type(e).__name__}: {e}",
                        fix="describe the data by names, not by objects") from e
    return json.loads(text)


def _transforms(spec) -> list[str]:
    if spec is None:
        return []
    names = [spec] if isinstance(spec, str) else spec
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError("a bad transform in a data source", expected="a transform name or a list of names",
                        given=repr(spec), fix="e.g. 'transform': 'identity'")
    for n in names:
        if n not in TRANSFORMS:
            near = closest(n, TRANSFORMS)
            raise DataError(f"unknown transform {n!r} in a data source",
                            expected="one of " + ", ".join(map(repr, sorted(TRANSFORMS))), given=repr(n),
                            fix=("did you mean " + " or ".join(map(repr, near)) + "?") if near
                            else "import the module that registers it (register_transform) before loading")
    return names


def resolve_source(source, data_dir=None) -> np.ndarray:
    """The images a source describes: float32 ``(n, d)`` in [0, 1], transforms applied.

    ``data_dir``: the folder of the data files where the dataset needs one (MNIST; default:
    :func:`lagrangian_family.data.default_data_root`). Raises
    :class:`~lagrangian_family.data.DataError` for an unknown name or missing data.

    >>> resolve_source({"dataset": "digits", "split": "test"}).shape
    (300, 64)
    """
    src = check_source(source)
    name = src.pop("dataset")
    split = src.pop("split", "train")
    transforms = _transforms(src.pop("transform", None))
    if name not in DATASETS:
        near = closest(name, DATASETS)
        raise DataError(f"unknown dataset {name!r} in a data source",
                        expected="one of " + ", ".join(map(repr, sorted(DATASETS))), given=repr(name),
                        fix=("did you mean " + " or ".join(map(repr, near)) + "?") if near
                        else "register it with lagrangian_family.data_sources.register_dataset")
    try:
        images = DATASETS[name](split, data_dir, **src)
    except TypeError as e:
        raise DataError(f"the dataset {name!r} does not take the options {sorted(src)}",
                        expected="the keys dataset, split, transform and the loader's own options",
                        given=f"{type(e).__name__}: {e}", fix="remove the extra keys from the source") from e
    for t in transforms:
        images = TRANSFORMS[t](images)
    return np.ascontiguousarray(images, dtype=np.float32)


def _check_split(dataset: str, split, allowed) -> None:
    if split not in allowed:
        raise DataError(f"unknown split {split!r} of {dataset}", expected="one of " + ", ".join(map(repr, allowed)),
                        given=repr(split), fix=f"use 'split': {allowed[0]!r}")


@register_dataset("mnist")
def _mnist(split, data_dir=None):
    from lagrangian_family.data import load_mnist, to_unit_interval

    _check_split("mnist", split, ("train", "test"))
    return to_unit_interval(load_mnist(data_dir, split)[0])


@register_dataset("digits")
def _digits(split, data_dir=None):
    from lagrangian_family.data import load_digits

    _check_split("digits", split, ("all", "train", "test"))
    x, _ = load_digits()
    if split == "all":
        return x
    x = x[np.random.default_rng(0).permutation(x.shape[0])]  # the experiments' shuffle and split
    return x[300:] if split == "train" else x[:300]


@register_transform("identity")
def _identity(images: np.ndarray) -> np.ndarray:
    return images


@register_transform("invert")
def _invert(images: np.ndarray) -> np.ndarray:
    """Colour-inverted images, 1 - x: the second domain of the recipes' CycleGAN and DiscoGAN
    (:mod:`lagrangian_family.backends.torch.recipes`), judged back by
    :mod:`lagrangian_family.evaluate.domains` (``"invert"``)."""
    return 1.0 - images
