"""The torch backend: compile a classified objective into a trainable loss; learn multipliers.

A map of the backend (every name below is importable from here):

* **compile**: :func:`compile_objective` turns a zoo name, a text objective or an
  :class:`~lagrangian_family.Objective` into a :class:`CompiledObjective` (an ``nn.Module``);
  calling it on a batch returns a :class:`LossOutput` (``loss`` to differentiate, ``value`` and
  ``terms`` to log, one :class:`Player` per parameter group: the model, and the critics);
* **components**: Gaussian MLP and conv encoders, Bernoulli, Gaussian and Laplace decoders,
  deterministic encoders and generators, :class:`StandardNormalPrior`,
  :class:`DataSamplerPrior` (samples only) and :class:`DistributionPrior` (any
  ``torch.distributions`` object as a module); any ``nn.Module`` that returns a distribution
  or a tensor fits;
* **estimators**: one per term, chosen by a registry (:func:`register_estimator`,
  :func:`candidates`, :class:`Estimator`, :class:`Estimate`): :class:`LikelihoodEstimator`
  (closed-form KL or Monte Carlo), :class:`MMDEstimator`, and the critic-based
  :class:`GANEstimator`, :class:`FGANEstimator` (:data:`F_DIVERGENCES`) and
  :class:`WGANGPEstimator`;
* **Lagrangians**: :class:`Lagrangian` (a primal and constraints ``D_i <= eps_i``) compiles to a
  :class:`CompiledLagrangian` whose multipliers are learned by a dual updater
  (:class:`GradientAscent`, :class:`RMSPropAscent`, :func:`paper_preset`, :class:`GECO`);
  :func:`calibrate_epsilon` sets ε from a reference run; :func:`lagrangian_of` makes the
  Lagrangian version of any member of the family (its dual form's divergences as constraints, an
  information preference as the primal), :func:`measure_constraints` and
  :func:`epsilon_with_slack` set ε = ε̂ + slack from a reference run trained by the caller;
  :class:`~lagrangian_family.backends.torch.cooper.CooperProblem` hands it to cooper-optim
  (the ``cooper`` extra);
* **training**: :class:`Trainer` (one step per player, dual updates, CSV log, checkpoints:
  versioned and checksummed by :mod:`.checkpoint`, a damaged one raises :class:`CheckpointError`);
  on every rank of a ``torch.distributed`` process group (``torchrun``; :func:`init_from_env`,
  :class:`RankSync`, :class:`DistributedError`, :mod:`.distributed`), with the multipliers
  the same on every rank; TensorBoard logs (:class:`TensorBoardLogger`, :mod:`.tensorboard`);
  :class:`VectorisedTrainer` trains a sweep of M runs of the section 7 model family as one
  stacked model (per-run noise, batches, optimiser state, multipliers and NaN guard;
  :func:`stack_key` says which runs stack);
* **model files**: :func:`save_model` and :func:`load_model` (a :class:`Model` with
  ``sample``, ``encode``, ``decode``, ``reconstruct``); :func:`register_component` for custom
  components;
* **metrics**: :mod:`.metrics` (mutual information by KDE or mixture, -ELBO, importance-sampled
  log-likelihood, MMD, constraint values).

>>> import torch, lagrangian_family as lf
>>> from lagrangian_family.backends.torch import (compile_objective, GaussianMLPEncoder,
...     BernoulliMLPDecoder, StandardNormalPrior)
>>> torch.manual_seed(0)
<torch._C.Generator object at ...>
>>> loss_fn = compile_objective("infovae", encoder=GaussianMLPEncoder(6, 2, hidden=(8,)),
...     decoder=BernoulliMLPDecoder(2, 6, hidden=(8,)), prior=StandardNormalPrior(2))
>>> out = loss_fn(torch.bernoulli(torch.full((8, 6), 0.5)), alpha=0.0, **{"lambda": 100.0})
>>> out.loss.backward()
>>> sorted(out.terms)
['E_{q(x)}[KL(q(z|x) || p(z))]', 'E_{q(x,z)}[log p(x|z)]', 'MMD(q(z) || p(z))']

Conventions: log-densities are summed over the data dimensions of an example, estimates are
means over the batch, and values are up to the constants the algebra drops (E_q[log q(x)],
E_p[log p(z)]): KL(q(x,z) || p(x,z)) is measured as -ELBO. MMD is the squared MMD with the
authors' kernel exp(-||a-b||^2/d^2), biased V-statistic (:mod:`.estimators.mmd`). A GAN term
of weight w is w·JS(a || b), estimated as (V + log 4)/2 from the discriminator's value V
(at the optimal discriminator V = 2·JS - log 4; :mod:`.estimators.adversarial`).
"""

from . import components, metrics
from .checkpoint import CheckpointError
from .compile import CompiledObjective, LossOutput, Player, compile_objective
from .components import *  # noqa: F403  (the names of components.__all__, re-exported below)
from .distributed import DistributedError, RankSync, init_from_env
from .estimators import F_DIVERGENCES, FGANEstimator, GANEstimator, LikelihoodEstimator, MMDEstimator, WGANGPEstimator
from .lagrangian import (
                         CompiledLagrangian,
                         Constraint,
                         Lagrangian,
                         calibrate_epsilon,
                         compile_with_recipe,
                         epsilon_with_slack,
                         lagrangian_of,
                         measure_constraints,
)
from .model import Model, ModelFileError, build_component, component_spec, load_model, register_component, save_model
from .registry import Context, Estimate, Estimator, Reject, candidates, register_estimator, unregister_estimator
from .samples import DistributionPrior
from .tensorboard import TensorBoardLogger
from .train import NonFiniteLossError, Trainer
from .updaters import GECO, DualUpdater, GradientAscent, HeldOut, RMSPropAscent, paper_preset
from .vectorised import VectorisedTrainer, stack_key

__all__ = [
    "compile_objective",
    "CompiledObjective",
    "LossOutput",
    "Player",
    "Lagrangian",
    "CompiledLagrangian",
    "Constraint",
    "calibrate_epsilon",
    "lagrangian_of",
    "measure_constraints",
    "compile_with_recipe",
    "epsilon_with_slack",
    "DualUpdater",
    "GradientAscent",
    "RMSPropAscent",
    "GECO",
    "HeldOut",
    "paper_preset",
    "Trainer",
    "NonFiniteLossError",
    "VectorisedTrainer",
    "stack_key",
    "CheckpointError",
    "RankSync",
    "DistributedError",
    "init_from_env",
    "TensorBoardLogger",
    "DistributionPrior",
    "metrics",
    "register_estimator",
    "unregister_estimator",
    "candidates",
    "Estimator",
    "Estimate",
    "Context",
    "Reject",
    "LikelihoodEstimator",
    "MMDEstimator",
    "GANEstimator",
    "FGANEstimator",
    "WGANGPEstimator",
    "F_DIVERGENCES",
    "Model",
    "ModelFileError",
    "save_model",
    "load_model",
    "component_spec",
    "build_component",
    "register_component",
]
__all__ += components.__all__
