"""lagrangian_family: the objectives of latent variable generative models as Lagrangians.

Write an objective, get back what it is (Zhao, Song, Ermon: "The Information Autoencoding
Family: A Lagrangian Perspective on Latent Variable Generative Models"):

>>> import lagrangian_family as lf
>>> c = lf.classify("beta_vae")
>>> c.computability
<Computability.LIKELIHOOD_BASED: 'likelihood-based'>
>>> c.dual.alpha1, c.dual.alpha2
(beta - 1, 0)
>>> lf.equivalent("vae", "KL(q(x,z) || p(x,z))")
True

The symbolic layer imports no torch; ``lagrangian_family.backends.torch`` does.
"""

from lagrangian_family import zoo
from lagrangian_family.errors import ObjectiveError
from lagrangian_family.symbolic.bounds import mi_bounds, replace_mi
from lagrangian_family.symbolic.classify import Classification, Computability, classify
from lagrangian_family.symbolic.closure import coefficients as closure_coefficients
from lagrangian_family.symbolic.closure import theorem1
from lagrangian_family.symbolic.constrained import PREFERENCES, LagrangianForm, lagrangian_form
from lagrangian_family.symbolic.derivation import Derivation, Step
from lagrangian_family.symbolic.dual import DualForm, decompose
from lagrangian_family.symbolic.normal_form import NormalForm, equivalent, normal_form
from lagrangian_family.symbolic.objective import Objective, symbol
from lagrangian_family.symbolic.parse import parse
from lagrangian_family.symbolic.terms import Density, Divergence, ExpectedLog, MutualInformation, Term

__version__ = "0.1.0"

__all__ = [
    "Classification",
    "Computability",
    "Density",
    "Derivation",
    "Divergence",
    "DualForm",
    "ExpectedLog",
    "LagrangianForm",
    "MutualInformation",
    "NormalForm",
    "Objective",
    "ObjectiveError",
    "PREFERENCES",
    "Step",
    "Term",
    "classify",
    "closure_coefficients",
    "decompose",
    "equivalent",
    "lagrangian_form",
    "mi_bounds",
    "normal_form",
    "parse",
    "replace_mi",
    "symbol",
    "theorem1",
    "zoo",
]
