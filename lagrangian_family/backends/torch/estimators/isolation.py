"""Keep the two players apart inside an estimator that owns a critic.

An adversarial estimator evaluates its critic on samples that carry the model's path
gradient. Differentiated naively, one score feeds both players: the model's loss would put
gradients into the critic's parameters (training the critic on the model's objective) and
the critic's loss gradients into the encoder and decoder. So each call evaluates the critic
on two paths:

* the **model path**: the critic with its parameters detached (``torch.func.functional_call``)
  on the samples with their path gradient; the term's value and the model's surrogate come
  from it, and their gradient reaches the encoder, decoder and prior only;
* the **critic path**: the critic's own parameters on the detached samples; the critic's loss
  (and any regulariser of it: gradient penalties) comes from it, and its gradient reaches the
  critic only.

The two scores are equal in value (up to what is random in the critic itself, e.g. dropout).
This is what a hand-written GAN step does (``D(G(z).detach())`` for the discriminator,
``D(G(z))`` for the generator), so its cost is the same. When no gradient is recorded
(``torch.no_grad``, evaluation) or the samples carry no path gradient, the critic runs once.

>>> import torch
>>> from torch import nn
>>> critic = nn.Linear(3, 1)
>>> data, fake = torch.randn(4, 3), torch.randn(4, 3, requires_grad=True)
>>> model_a, model_b, own_a, own_b = critic_paths(critic, data, fake)
>>> model_b.sum().backward()
>>> fake.grad is not None, critic.weight.grad is None
(True, True)
>>> (own_a.sum() - own_b.sum()).backward()
>>> critic.weight.grad is not None, model_a.requires_grad
(True, False)
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

__all__ = ["frozen_call", "critic_paths"]


def _scores(out: torch.Tensor) -> torch.Tensor:
    return out.reshape(out.shape[0])


def frozen_call(module: nn.Module, *args):
    """``module(*args)`` with the module's parameters detached: the gradient reaches the inputs only.

    Buffers (batch-norm statistics, spectral-norm vectors) are the module's own and are
    updated as by a plain call.

    >>> lin = nn.Linear(2, 1)
    >>> x = torch.ones(1, 2, requires_grad=True)
    >>> frozen_call(lin, x).sum().backward()
    >>> lin.weight.grad is None, x.grad.shape
    (True, torch.Size([1, 2]))
    """
    params = {name: p.detach() for name, p in module.named_parameters()}
    if not params:
        return module(*args)
    return functional_call(module, params, args)


def critic_paths(critic: nn.Module, a: torch.Tensor, b: torch.Tensor):
    """The critic's scores ``(n,)`` of two batches of samples on both paths (see the module doc).

    ``a``, ``b``: samples ``(n, d)`` of the two arguments as the model produced them (the data
    side carries no gradient). Returns ``(model_a, model_b, critic_a, critic_b)``: the model
    path's scores have a gradient with respect to the samples only, the critic path's with
    respect to the critic's parameters only. The critic runs once on both batches together for
    its own path, and with frozen parameters only on the batches that carry a path gradient.
    """
    n = a.shape[0]
    if not torch.is_grad_enabled():
        t = _scores(critic(torch.cat([a, b], 0)))
        return t[:n], t[n:], t[:n], t[n:]
    own = _scores(critic(torch.cat([a.detach(), b.detach()], 0)))
    own_a, own_b = own[:n], own[n:]
    if a.requires_grad and b.requires_grad:
        model = _scores(frozen_call(critic, torch.cat([a, b], 0)))
        return model[:n], model[n:], own_a, own_b
    model_a = _scores(frozen_call(critic, a)) if a.requires_grad else own_a.detach()
    model_b = _scores(frozen_call(critic, b)) if b.requires_grad else own_b.detach()
    return model_a, model_b, own_a, own_b
