"""Second domains made from the digits themselves, for CycleGAN and DiscoGAN, and the way back.

A translation model learns to map images of one domain to another. With a second domain that
is a known, invertible transform of the first (colour-inverted digits, rotated digits), every
image of either domain can be brought back to the first domain's form, where the one digit
classifier judges it: a translation into the inverted domain is inverted back, a translation
into the rotated domain rotated back. So "does the translation keep its digit" needs no second
classifier, and the judge is the same one that scores samples.

======================  ===========================================  =====================
domain                  image in the domain (from a digit x)          back to digit form
======================  ===========================================  =====================
``original``            x                                            x
``invert``              1 − x                                        1 − y
``rot90``               x rotated 90° counter-clockwise              y rotated clockwise
``rot180``              x rotated 180°                               y rotated 180°
``rot270``              x rotated 90° clockwise                      y rotated counter-cw.
``transposed``          xᵀ (mirrored about the main diagonal)         yᵀ
``flipped``             x mirrored left-right                        y mirrored left-right
======================  ===========================================  =====================

The names ``rot90`` and ``invert`` are those of :func:`lagrangian_family.data.domain_transform`
where it exists (the same transforms); ``inverted`` and ``identity`` are accepted as aliases.
Images are ``(N, side*side)`` rows (any shape :func:`~.common.as_images` accepts), intensities
in [0, 1]; the transforms are exact (no interpolation): ``from_domain(to_domain(x))`` is ``x``, up to
float rounding for the inversion.

>>> x = np.arange(4.0).reshape(1, 4) / 4   # one 2x2 "image" [[0, .25], [.5, .75]]
>>> to_domain(x, "rot90", side=2).tolist()
[[0.25, 0.75, 0.0, 0.5]]
>>> bool((from_domain(to_domain(x, "rot90", side=2), "rot90", side=2) == x).all())
True
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lagrangian_family.errors import ObjectiveError, closest

__all__ = ["ALIASES", "DOMAINS", "domain_name", "from_domain", "to_domain"]


def _grid(f: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray, int], np.ndarray]:
    def apply(x: np.ndarray, side: int) -> np.ndarray:
        n = x.shape[0]
        return np.ascontiguousarray(f(x.reshape(n, side, side))).reshape(n, side * side)
    return apply


def _invert(x: np.ndarray, side: int) -> np.ndarray:
    return 1.0 - x


def _identity(x: np.ndarray, side: int) -> np.ndarray:
    return x


#: name -> (into the domain, back to the digit form), each on (N, side*side) arrays.
DOMAINS: dict[str, tuple[Callable[[np.ndarray, int], np.ndarray], Callable[[np.ndarray, int], np.ndarray]]] = {
    "original": (_identity, _identity),
    "invert": (_invert, _invert),
    "rot90": (_grid(lambda a: np.rot90(a, 1, axes=(1, 2))), _grid(lambda a: np.rot90(a, -1, axes=(1, 2)))),
    "rot180": (_grid(lambda a: np.rot90(a, 2, axes=(1, 2))), _grid(lambda a: np.rot90(a, 2, axes=(1, 2)))),
    "rot270": (_grid(lambda a: np.rot90(a, -1, axes=(1, 2))), _grid(lambda a: np.rot90(a, 1, axes=(1, 2)))),
    "transposed": (_grid(lambda a: a.transpose(0, 2, 1)), _grid(lambda a: a.transpose(0, 2, 1))),
    "flipped": (_grid(lambda a: a[:, :, ::-1]), _grid(lambda a: a[:, :, ::-1])),
}


#: Other names of the same domains ("identity" as in :mod:`lagrangian_family.data_sources`).
ALIASES = {"identity": "original", "inverted": "invert", "rotated": "rot90"}


def domain_name(domain: str) -> str:
    """The name in :data:`DOMAINS` of ``domain`` (a name or an alias), else an ObjectiveError.

    >>> domain_name("inverted")
    'invert'
    """
    if isinstance(domain, str) and domain in DOMAINS:
        return domain
    if isinstance(domain, str) and domain in ALIASES:
        return ALIASES[domain]
    near = closest(str(domain), [*DOMAINS, *ALIASES])
    raise ObjectiveError(f"unknown domain {domain!r}", expected="one of " + ", ".join(DOMAINS),
                         given=repr(domain), fix=f"did you mean {near[0]!r}?" if near else
                         "pass a domain name from lagrangian_family.evaluate.DOMAINS")


def _rows(images, side: int) -> np.ndarray:
    from .common import DataError, _to_numpy

    x = _to_numpy(images, "images")
    if x.ndim < 2 or int(np.prod(x.shape[1:])) != side * side or x.dtype.kind not in "biuf":
        raise DataError(f"images are not {side}x{side}", expected=f"numbers of shape (N, {side * side}) or "
                        f"(N, {side}, {side})", given=f"{x.dtype} of shape {x.shape}", fix="pass side= to match")
    return x.reshape(x.shape[0], side * side).astype(np.float32)


def to_domain(images, domain: str, side: int = 28) -> np.ndarray:
    """Digit images (``(N, side*side)`` in [0, 1]) as images of ``domain`` (a name in :data:`DOMAINS`).

    >>> to_domain(np.array([[0.0, 1.0, 0.25, 0.5]]), "invert", side=2).tolist()
    [[1.0, 0.0, 0.75, 0.5]]
    """
    return DOMAINS[domain_name(domain)][0](_rows(images, side), side)


def from_domain(images, domain: str, side: int = 28) -> np.ndarray:
    """Images of ``domain`` brought back to the digit form (the inverse of :func:`to_domain`).

    >>> from_domain(np.array([[1.0, 0.0, 0.75, 0.5]]), "invert", side=2).tolist()
    [[0.0, 1.0, 0.25, 0.5]]
    """
    return DOMAINS[domain_name(domain)][1](_rows(images, side), side)
