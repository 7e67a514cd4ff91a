"""Model components: the encoder q(z|x), the decoder p(x|z) and the prior p(z).

The protocol is small, so any ``nn.Module`` fits:

* an **encoder** maps a batch ``x`` of shape ``(n, *x_shape)`` to a
  :class:`torch.distributions.Distribution` over z (explicit; its ``log_prob`` and, where it
  exists, ``rsample`` are used) or to a tensor ``(n, z_dim)`` (implicit: a deterministic map);
* a **decoder** maps ``z`` of shape ``(n, z_dim)`` to a distribution over x (explicit) or to a
  tensor ``(n, *x_shape)`` (implicit: a deterministic generator, as in GANs and ALI);
* a **prior** is a :class:`torch.distributions.Distribution` over one z, or an object with
  ``sample(n)`` (and optionally ``log_prob(z)``): :class:`StandardNormalPrior` is explicit,
  :class:`DataSamplerPrior` gives samples only (CycleGAN's second image domain).

Reductions: every log-density is summed over the data (or latent) dimensions of one example,
and every estimate is averaged over the batch. A distribution whose ``event_shape`` does not
cover the data dimensions (a plain ``Normal`` instead of ``Independent(Normal, 1)``) is summed
all the same.

The ready-made components below return ``Independent(..., k)`` distributions so that
``log_prob`` already sums over the data dimensions.

>>> import torch
>>> enc = GaussianMLPEncoder(x_dim=6, z_dim=2, hidden=(8,))
>>> dec = BernoulliMLPDecoder(z_dim=2, x_shape=(6,), hidden=(8,))
>>> prior = StandardNormalPrior(2)
>>> q = enc(torch.zeros(5, 6))
>>> tuple(q.rsample().shape), tuple(dec(q.rsample()).log_prob(torch.ones(5, 6)).shape)
((5, 2), (5,))
>>> tuple(prior.sample(3).shape)
(3, 2)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Bernoulli, Distribution, Independent, Laplace, Normal

from lagrangian_family.errors import ObjectiveError

__all__ = [
    "GaussianMLPEncoder",
    "GaussianConvEncoder",
    "DeterministicMLPEncoder",
    "BernoulliMLPDecoder",
    "GaussianMLPDecoder",
    "LaplaceMLPDecoder",
    "BernoulliConvDecoder",
    "GaussianConvDecoder",
    "DeterministicMLPDecoder",
    "StandardNormalPrior",
    "DataSamplerPrior",
    "MLPCritic",
    "CodePrior",
    "CodeEncoder",
    "CodeDistribution",
    "NoisyMLPEncoder",
    "LaplaceConvTranslator",
    "CycleCost",
    "mlp",
    "share_trunk",
]


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.Softplus, batch_norm: bool = False) -> nn.Sequential:
    """A multilayer perceptron ``sizes[0] -> ... -> sizes[-1]`` with no activation at the end;
    ``batch_norm``: batch normalisation after every hidden linear layer, before its activation.

    >>> mlp([3, 4, 1])
    Sequential(
      (0): Linear(in_features=3, out_features=4, bias=True)
      (1): Softplus(beta=1.0, threshold=20.0)
      (2): Linear(in_features=4, out_features=1, bias=True)
    )
    """
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            if batch_norm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(activation())
    return nn.Sequential(*layers)


def _prod(shape: Sequence[int]) -> int:
    return int(math.prod(shape))


def _config(**kwargs) -> dict:
    """A component's constructor arguments as JSON-serialisable values (``self.config``).

    Every built-in component stores its keyword arguments this way, so that a model file can
    rebuild it (:func:`lagrangian_family.backends.torch.model.build_component`): an activation
    class is stored by its name in ``torch.nn``, tuples become lists.

    >>> _config(hidden=(8, 8), activation=nn.Softplus, scale=None)
    {'hidden': [8, 8], 'activation': 'Softplus', 'scale': None}
    """

    def plain(v):
        if isinstance(v, type) and issubclass(v, nn.Module):
            return v.__name__
        if isinstance(v, (tuple, list)):
            return [plain(u) for u in v]
        if isinstance(v, dict):
            return {str(k): plain(u) for k, u in v.items()}
        return v

    return {k: plain(v) for k, v in kwargs.items()}


class GaussianMLPEncoder(nn.Module):
    """q(z|x) = N(mu(x), diag(sigma(x)^2)) from an MLP on the flattened x.

    The authors' LagVAE network is ``GaussianMLPEncoder(784, 64, hidden=(1024, 1024))`` with
    softplus activations and ``sigma = exp(log_sigma)``.

    >>> import torch
    >>> GaussianMLPEncoder(4, 2, hidden=(8,))(torch.zeros(3, 4)).event_shape
    torch.Size([2])
    """

    explicit = True

    def __init__(self, x_dim: int, z_dim: int, hidden: Sequence[int] = (1024, 1024),
                 activation: type[nn.Module] = nn.Softplus, min_log_scale: float = -10.0,
                 max_log_scale: float = 10.0):
        super().__init__()
        self.x_dim, self.z_dim = int(x_dim), int(z_dim)
        self.body = mlp([self.x_dim, *hidden], activation)
        width = hidden[-1] if hidden else self.x_dim
        self.act = activation() if hidden else nn.Identity()
        self.head = nn.Linear(width, 2 * self.z_dim)
        self.min_log_scale, self.max_log_scale = min_log_scale, max_log_scale
        self.config = _config(x_dim=self.x_dim, z_dim=self.z_dim, hidden=hidden, activation=activation,
                              min_log_scale=min_log_scale, max_log_scale=max_log_scale)

    def forward(self, x: torch.Tensor) -> Distribution:
        """q(z|x) for a batch ``x`` ``(n, x_dim)`` (or any shape that flattens to it): ``Independent(Normal, 1)``."""
        h = self.act(self.body(x.reshape(x.shape[0], -1)))
        loc, log_scale = self.head(h).chunk(2, dim=-1)
        log_scale = log_scale.clamp(self.min_log_scale, self.max_log_scale)
        return Independent(Normal(loc, log_scale.exp()), 1)


class DeterministicMLPEncoder(nn.Module):
    """An implicit encoder: z = f(x), a tensor (WAE, adversarial autoencoders, CycleGAN).

    >>> import torch
    >>> tuple(DeterministicMLPEncoder(4, 2, hidden=(8,))(torch.zeros(3, 4)).shape)
    (3, 2)
    """

    explicit = False

    def __init__(self, x_dim: int, z_dim: int, hidden: Sequence[int] = (256,),
                 activation: type[nn.Module] = nn.Softplus):
        super().__init__()
        self.x_dim, self.z_dim = int(x_dim), int(z_dim)
        self.net = mlp([self.x_dim, *hidden, self.z_dim], activation)
        self.config = _config(x_dim=self.x_dim, z_dim=self.z_dim, hidden=hidden, activation=activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The codes z = f(x), a tensor ``(n, z_dim)``, for a batch ``x`` ``(n, x_dim)``."""
        return self.net(x.reshape(x.shape[0], -1))


class _ConvBody(nn.Module):
    """Two stride-2 convolutions: (c, s, s) -> (2w, s/4, s/4)."""

    def __init__(self, channels: int, image_size: int, width: int):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4, got {image_size}")
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        self.out_features = 2 * width * (image_size // 4) ** 2

    def forward(self, x):
        return self.net(x)


class GaussianConvEncoder(nn.Module):
    """q(z|x) = N(mu(x), diag(sigma(x)^2)) from a small convolutional network on images.

    Input ``(n, channels, image_size, image_size)`` (or flat ``(n, c*s*s)``, reshaped).

    >>> import torch
    >>> enc = GaussianConvEncoder(channels=1, image_size=8, z_dim=3, width=4)
    >>> tuple(enc(torch.zeros(2, 1, 8, 8)).rsample().shape)
    (2, 3)
    """

    explicit = True

    def __init__(self, channels: int = 1, image_size: int = 28, z_dim: int = 64, width: int = 32,
                 hidden: int = 256):
        super().__init__()
        self.x_shape = (channels, image_size, image_size)
        self.z_dim = int(z_dim)
        self.body = _ConvBody(channels, image_size, width)
        self.fc = nn.Sequential(nn.Linear(self.body.out_features, hidden), nn.LeakyReLU(0.2),
                                nn.Linear(hidden, 2 * self.z_dim))
        self.config = _config(channels=channels, image_size=image_size, z_dim=z_dim, width=width, hidden=hidden)

    def forward(self, x: torch.Tensor) -> Distribution:
        """q(z|x) for a batch of images (or flat rows): ``Independent(Normal, 1)`` over ``(n, z_dim)``."""
        x = x.reshape(x.shape[0], *self.x_shape)
        loc, log_scale = self.fc(self.body(x)).chunk(2, dim=-1)
        return Independent(Normal(loc, log_scale.clamp(-10.0, 10.0).exp()), 1)


class _MLPDecoder(nn.Module):
    explicit = True

    def __init__(self, z_dim: int, x_shape: Sequence[int] | int, hidden: Sequence[int],
                 activation: type[nn.Module], n_params: int, batch_norm: bool = False):
        super().__init__()
        self.z_dim = int(z_dim)
        self.x_shape = (int(x_shape),) if isinstance(x_shape, int) else tuple(int(s) for s in x_shape)
        self.x_dim = _prod(self.x_shape)
        self.net = mlp([self.z_dim, *hidden, n_params * self.x_dim], activation, batch_norm)

    def _params(self, z):
        out = self.net(z)
        return out.reshape(z.shape[0], -1, *self.x_shape).unbind(1)


class BernoulliMLPDecoder(_MLPDecoder):
    """p(x|z) = Bernoulli(logits(z)) over binary x, summed over data dimensions.

    The authors' LagVAE decoder is ``BernoulliMLPDecoder(64, (784,), hidden=(1024, 1024))``.

    >>> import torch
    >>> BernoulliMLPDecoder(2, (1, 2, 2), hidden=(8,))(torch.zeros(3, 2)).event_shape
    torch.Size([1, 2, 2])
    """

    def __init__(self, z_dim: int, x_shape: Sequence[int] | int, hidden: Sequence[int] = (1024, 1024),
                 activation: type[nn.Module] = nn.Softplus):
        super().__init__(z_dim, x_shape, hidden, activation, 1)
        self.config = _config(z_dim=self.z_dim, x_shape=self.x_shape, hidden=hidden, activation=activation)

    def forward(self, z: torch.Tensor) -> Distribution:
        """p(x|z) for codes ``z`` ``(n, z_dim)``: Bernoulli logits, independent over ``x_shape``."""
        (logits,) = self._params(z)
        return Independent(Bernoulli(logits=logits), len(self.x_shape))


class _LocScaleMLPDecoder(_MLPDecoder):
    """p(x|z) = ``distribution``(mu(z), scale): the scale learned per example and dimension
    (``exp`` of a second output, clamped to [-10, 10] in log space), or fixed (``scale``)."""

    #: the location-scale family of p(x|z) (set by each subclass)
    distribution: type[Distribution] = Normal

    def __init__(self, z_dim: int, x_shape: Sequence[int] | int, hidden: Sequence[int] = (1024, 1024),
                 activation: type[nn.Module] = nn.Softplus, scale: float | None = None):
        super().__init__(z_dim, x_shape, hidden, activation, 1 if scale is not None else 2)
        self.fixed_scale = scale
        self.config = _config(z_dim=self.z_dim, x_shape=self.x_shape, hidden=hidden, activation=activation,
                              scale=scale)

    def forward(self, z: torch.Tensor) -> Distribution:
        """p(x|z) for codes ``z`` ``(n, z_dim)``: ``distribution(loc, scale)``, independent over ``x_shape``."""
        params = self._params(z)
        loc = params[0]
        if self.fixed_scale is not None:
            scale = torch.full_like(loc, float(self.fixed_scale))
        else:
            scale = params[1].clamp(-10.0, 10.0).exp()
        return Independent(self.distribution(loc, scale), len(self.x_shape))


class GaussianMLPDecoder(_LocScaleMLPDecoder):
    """p(x|z) = N(mu(z), sigma^2): sigma learned per example and dimension, or fixed.

    With a fixed ``scale``, ``-log p(x|z)`` is the squared error ``||x - mu||^2 / (2 sigma^2)``
    plus a constant: the reading of an l2 reconstruction cost as a negative log-likelihood.

    >>> import torch
    >>> d = GaussianMLPDecoder(2, 3, hidden=(8,), scale=1.0)
    >>> float(d(torch.zeros(1, 2)).base_dist.scale[0, 0])
    1.0
    """

    distribution = Normal


class LaplaceMLPDecoder(_LocScaleMLPDecoder):
    """p(x|z) = Laplace(mu(z), b): an l1 reconstruction cost read as a negative log-likelihood.

    >>> import torch
    >>> LaplaceMLPDecoder(2, 3, hidden=(8,), scale=0.5)(torch.zeros(4, 2)).batch_shape
    torch.Size([4])
    """

    distribution = Laplace


class DeterministicMLPDecoder(_MLPDecoder):
    """An implicit decoder (a GAN generator): x = g(z), a tensor; it has no log p(x|z).

    ``output`` is applied last: ``"sigmoid"`` for images in [0, 1], ``None`` for none.
    ``batch_norm``: batch normalisation after every hidden layer, as the generators of DCGAN
    (Radford et al. 2016) and of BiGAN's and InfoGAN's MNIST experiments; the running statistics
    are used in eval mode (sampling, evaluation), the batch's in training. Under distributed
    training each rank normalises over its own shard and keeps its own running statistics (no
    synchronised batch norm).

    >>> import torch
    >>> tuple(DeterministicMLPDecoder(2, (3,), hidden=(8,))(torch.zeros(5, 2)).shape)
    (5, 3)
    """

    explicit = False

    def __init__(self, z_dim: int, x_shape: Sequence[int] | int, hidden: Sequence[int] = (256, 256),
                 activation: type[nn.Module] = nn.Softplus, output: str | None = None, batch_norm: bool = False):
        super().__init__(z_dim, x_shape, hidden, activation, 1, bool(batch_norm))
        if output not in (None, "sigmoid", "tanh"):
            raise ValueError(f"output must be None, 'sigmoid' or 'tanh', got {output!r}")
        self.output = output
        self.config = _config(z_dim=self.z_dim, x_shape=self.x_shape, hidden=hidden, activation=activation,
                              output=output, **({"batch_norm": True} if batch_norm else {}))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The generated batch x = g(z), a tensor ``(n, *x_shape)``, for codes ``z`` ``(n, z_dim)``."""
        (x,) = self._params(z)
        if self.output == "sigmoid":
            return torch.sigmoid(x)
        if self.output == "tanh":
            return torch.tanh(x)
        return x


class _ConvDecoderBody(nn.Module):
    def __init__(self, z_dim: int, channels_out: int, image_size: int, width: int, hidden: int):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4, got {image_size}")
        self.s = image_size // 4
        self.width = width
        self.fc = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(),
                                nn.Linear(hidden, 2 * width * self.s * self.s), nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(width, channels_out, 4, 2, 1),
        )

    def forward(self, z):
        h = self.fc(z).reshape(z.shape[0], 2 * self.width, self.s, self.s)
        return self.deconv(h)


class BernoulliConvDecoder(nn.Module):
    """p(x|z) = Bernoulli(logits(z)) over binary images ``(channels, image_size, image_size)``.

    >>> import torch
    >>> dec = BernoulliConvDecoder(z_dim=3, channels=1, image_size=8, width=4, hidden=16)
    >>> dec(torch.zeros(2, 3)).event_shape
    torch.Size([1, 8, 8])
    """

    explicit = True

    def __init__(self, z_dim: int = 64, channels: int = 1, image_size: int = 28, width: int = 32,
                 hidden: int = 256):
        super().__init__()
        self.z_dim = int(z_dim)
        self.x_shape = (channels, image_size, image_size)
        self.body = _ConvDecoderBody(self.z_dim, channels, image_size, width, hidden)
        self.config = _config(z_dim=z_dim, channels=channels, image_size=image_size, width=width, hidden=hidden)

    def forward(self, z: torch.Tensor) -> Distribution:
        """p(x|z) for codes ``z`` ``(n, z_dim)``: Bernoulli logits over ``(channels, size, size)``."""
        return Independent(Bernoulli(logits=self.body(z)), 3)


class GaussianConvDecoder(nn.Module):
    """p(x|z) = N(mu(z), sigma^2) over images, sigma fixed (``scale``) or one learned scalar.

    >>> import torch
    >>> dec = GaussianConvDecoder(z_dim=3, channels=1, image_size=8, width=4, hidden=16, scale=0.1)
    >>> tuple(dec(torch.zeros(2, 3)).mean.shape)
    (2, 1, 8, 8)
    """

    explicit = True

    def __init__(self, z_dim: int = 64, channels: int = 1, image_size: int = 28, width: int = 32,
                 hidden: int = 256, scale: float | None = None):
        super().__init__()
        self.z_dim = int(z_dim)
        self.x_shape = (channels, image_size, image_size)
        self.body = _ConvDecoderBody(self.z_dim, channels, image_size, width, hidden)
        self.fixed_scale = scale
        if scale is None:
            self.log_scale = nn.Parameter(torch.zeros(()))
        self.config = _config(z_dim=z_dim, channels=channels, image_size=image_size, width=width, hidden=hidden,
                              scale=scale)

    def forward(self, z: torch.Tensor) -> Distribution:
        """p(x|z) for codes ``z`` ``(n, z_dim)``: a Normal over ``(channels, size, size)``."""
        loc = self.body(z)
        if self.fixed_scale is not None:
            scale = torch.full_like(loc, float(self.fixed_scale))
        else:
            scale = self.log_scale.exp().expand_as(loc)
        return Independent(Normal(loc, scale), 3)


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I) in ``dim`` dimensions; its buffers follow ``.to(device)``.

    >>> p = StandardNormalPrior(3)
    >>> round(float(p.log_prob(p.sample(1))[0] <= 0), 1), p.distribution().event_shape
    (1.0, torch.Size([3]))
    """

    explicit = True

    def __init__(self, dim: int):
        super().__init__()
        self.z_dim = int(dim)
        self.config = _config(dim=self.z_dim)
        self.register_buffer("loc", torch.zeros(self.z_dim), persistent=False)
        self.register_buffer("scale", torch.ones(self.z_dim), persistent=False)

    def distribution(self) -> Distribution:
        """p(z) as a torch distribution, ``Independent(Normal(0, 1), 1)`` on the buffers' device."""
        return Independent(Normal(self.loc, self.scale), 1)

    def sample(self, n: int) -> torch.Tensor:
        """``n`` draws of z, a tensor ``(n, dim)`` (reparameterised: ``rsample`` is the same)."""
        return torch.randn(n, self.z_dim, device=self.loc.device, dtype=self.loc.dtype)

    rsample = sample

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) of each row of ``z`` ``(n, dim)``, summed over the dimensions: shape ``(n,)``."""
        return -0.5 * (z * z).sum(-1) - 0.5 * self.z_dim * math.log(2 * math.pi)

    def forward(self, n: int) -> torch.Tensor:  # pragma: no cover - convenience
        """``prior(n)`` is ``prior.sample(n)``."""
        return self.sample(n)


class DataSamplerPrior(nn.Module):
    """A prior known only through samples: draws rows of ``data`` uniformly with replacement.

    This is CycleGAN's second domain (z is an image of the other domain). It has no
    ``log_prob``: a term that needs log p(z) cannot be compiled with it. The rows are a buffer,
    so they follow ``.to(device)``; they are not saved in ``state_dict``, nor in a model file.
    ``source``: where the rows come from, as a JSON-serialisable description that
    :func:`lagrangian_family.data_sources.resolve_source` turns back into the rows (e.g.
    ``{"dataset": "mnist", "split": "train", "transform": "rot90"}``); a model file stores it
    so that loading needs no data from the user. Without it, ``load_model(..., prior=...)``
    supplies the rows.

    >>> import torch
    >>> p = DataSamplerPrior(torch.arange(10.).reshape(5, 2), source={"dataset": "digits"})
    >>> tuple(p.sample(7).shape), p.config
    ((7, 2), {'source': {'dataset': 'digits'}})
    """

    explicit = False

    def __init__(self, data: torch.Tensor, source: dict | None = None):
        super().__init__()
        data = torch.as_tensor(data)
        if data.dim() < 2:
            data = data.reshape(-1, 1)
        self.register_buffer("data", data, persistent=False)
        self.z_dim = _prod(data.shape[1:])
        if source is not None:
            from lagrangian_family.data_sources import check_source

            source = check_source(source)
        self.source = source
        self.config = _config(source=source)

    def sample(self, n: int) -> torch.Tensor:
        """``n`` rows of the data, drawn uniformly with replacement: ``(n, *row_shape)``."""
        idx = torch.randint(0, self.data.shape[0], (n,), device=self.data.device)
        return self.data[idx]

    def forward(self, n: int) -> torch.Tensor:  # pragma: no cover - convenience
        """``prior(n)`` is ``prior.sample(n)``."""
        return self.sample(n)


# -- components chosen by the recipes (:mod:`.recipes`) ------------------------------------------

class MLPCritic(nn.Module):
    """A critic ``in_dim -> hidden... -> 1`` (LeakyReLU 0.2) for the adversarial estimators.

    ``spectral_norm``: every linear layer's weight divided by its largest singular value
    (Miyato et al. 2018, *Spectral Normalization for GANs*), which bounds the critic's Lipschitz
    constant so that it cannot saturate and starve the generator of gradient.
    ``dropout``: dropout before every hidden layer after the first, as in ALI's joint
    discriminator (Dumoulin et al. 2017, dropout 0.2), which keeps a joint critic from
    memorising the pairs it has seen.

    >>> import torch
    >>> c = MLPCritic(6, hidden=(8, 8), dropout=0.2, spectral_norm=True)
    >>> tuple(c(torch.zeros(3, 6)).shape), c.config["spectral_norm"]
    ((3, 1), True)
    """

    def __init__(self, in_dim: int, hidden: Sequence[int] = (256, 256), dropout: float = 0.0,
                 spectral_norm: bool = True, activation: type[nn.Module] = nn.LeakyReLU):
        super().__init__()
        self.in_dim = int(in_dim)
        sizes = [self.in_dim, *[int(h) for h in hidden], 1]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            if dropout and i > 0:
                layers.append(nn.Dropout(float(dropout)))
            lin = nn.Linear(a, b)
            if spectral_norm:
                lin = torch.nn.utils.parametrizations.spectral_norm(lin)
            layers.append(lin)
            if i < len(sizes) - 2:
                layers.append(activation(0.2) if activation is nn.LeakyReLU else activation())
        self.net = nn.Sequential(*layers)
        self.config = _config(in_dim=self.in_dim, hidden=hidden, dropout=float(dropout),
                              spectral_norm=bool(spectral_norm), activation=activation)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """The critic's score of each row of ``u`` ``(n, in_dim)``: a tensor ``(n, 1)``."""
        return self.net(u.reshape(u.shape[0], -1))


class CodePrior(nn.Module):
    """InfoGAN's latent code (Chen et al. 2016): z = [c, u, e] with c a one-hot categorical code of
    ``n_categories`` values (uniform), u ``n_continuous`` codes uniform on [-1, 1] and e
    ``n_noise`` standard normal noise dimensions (MNIST: 10, 2 and 62, the paper's choice).
    Known through samples (no term of InfoGAN needs log p(z)).

    >>> p = CodePrior(3, 1, 2)
    >>> z = p.sample(4)
    >>> tuple(z.shape), bool((z[:, :3].sum(1) == 1).all())
    ((4, 6), True)
    """

    explicit = False

    def __init__(self, n_categories: int = 10, n_continuous: int = 2, n_noise: int = 62):
        super().__init__()
        self.n_categories, self.n_continuous, self.n_noise = int(n_categories), int(n_continuous), int(n_noise)
        self.z_dim = self.n_categories + self.n_continuous + self.n_noise
        self.register_buffer("anchor", torch.zeros(()), persistent=False)  # follows .to(device, dtype)
        self.config = _config(n_categories=self.n_categories, n_continuous=self.n_continuous, n_noise=self.n_noise)

    def sample_codes(self, n: int, categories: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` draws of z; ``categories`` (``(n,)`` integers) fixes the categorical code (for evaluation)."""
        dev, dt = self.anchor.device, self.anchor.dtype
        if categories is None:
            categories = torch.randint(0, self.n_categories, (n,), device=dev)
        c = torch.nn.functional.one_hot(categories.to(dev).long(), self.n_categories).to(dt)
        u = torch.rand(n, self.n_continuous, device=dev, dtype=dt) * 2 - 1
        e = torch.randn(n, self.n_noise, device=dev, dtype=dt)
        return torch.cat([c, u, e], 1)

    def sample(self, n: int) -> torch.Tensor:
        """``n`` draws of z = [one-hot c, u, e], a tensor ``(n, z_dim)``."""
        return self.sample_codes(n)


class CodeDistribution(Distribution):
    """q(z|x) of InfoGAN's Q network over z = [c, u, e]: a categorical over the one-hot c (``logits``),
    a factorised Gaussian over u (``loc``, ``scale``) and, for the noise e, which InfoGAN does not
    infer, N(0, I) independent of x (its log-density is a constant with no gradient). ``mean`` is
    [softmax(logits), loc, 0]."""

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, logits: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, n_noise: int):
        self.logits, self.loc, self.scale, self.n_noise = logits, loc, scale, int(n_noise)
        self.k, self.m = logits.shape[-1], loc.shape[-1]
        super().__init__(batch_shape=logits.shape[:-1], event_shape=torch.Size([self.k + self.m + self.n_noise]),
                         validate_args=False)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x) per example: the categorical's at the one-hot part, the Gaussian's at u, N(0, I)'s at e."""
        c, u, e = z.split([self.k, self.m, self.n_noise], dim=-1)
        lc = (c * torch.log_softmax(self.logits, -1)).sum(-1)
        lu = Normal(self.loc, self.scale).log_prob(u).sum(-1)
        le = -0.5 * (e * e).sum(-1) - 0.5 * self.n_noise * math.log(2 * math.pi)
        return lc + lu + le

    def sample(self, sample_shape=()) -> torch.Tensor:
        """A draw of z: a one-hot categorical code, Gaussian u, standard normal e."""
        with torch.no_grad():
            shape = torch.Size(sample_shape) + self.batch_shape
            idx = torch.distributions.Categorical(logits=self.logits).sample(torch.Size(sample_shape))
            c = torch.nn.functional.one_hot(idx, self.k).to(self.loc.dtype)
            u = Normal(self.loc, self.scale).sample(torch.Size(sample_shape))
            e = torch.randn(*shape, self.n_noise, device=self.loc.device, dtype=self.loc.dtype)
            return torch.cat([c, u, e], -1)

    @property
    def mean(self) -> torch.Tensor:
        """[softmax(logits), loc, 0]: the code's expected value."""
        zeros = self.loc.new_zeros(*self.loc.shape[:-1], self.n_noise)
        return torch.cat([torch.softmax(self.logits, -1), self.loc, zeros], -1)


class CodeEncoder(nn.Module):
    """InfoGAN's Q network: x -> :class:`CodeDistribution` over [c, u, e] (an MLP on the flat x).

    ``continuous_scale``: the fixed standard deviation of the Gaussian over the continuous codes
    (default 1, as the InfoGAN authors' code fixes it), so their term is a squared error on the
    scale of the categorical code's; ``None`` learns it (its log-density then grows without bound
    as the scale shrinks and drowns the categorical code's gradient).

    >>> import torch
    >>> q = CodeEncoder(6, 3, 1, 2, hidden=(8,))(torch.zeros(4, 6))
    >>> tuple(q.log_prob(torch.zeros(4, 6)).shape), tuple(q.mean.shape)
    ((4,), (4, 6))
    """

    explicit = True

    def __init__(self, x_dim: int, n_categories: int = 10, n_continuous: int = 2, n_noise: int = 62,
                 hidden: Sequence[int] = (512, 512), activation: type[nn.Module] = nn.LeakyReLU,
                 continuous_scale: float | None = 1.0):
        super().__init__()
        self.x_dim, self.n_categories, self.n_continuous, self.n_noise = (int(x_dim), int(n_categories),
                                                                          int(n_continuous), int(n_noise))
        self.z_dim = self.n_categories + self.n_continuous + self.n_noise
        act = (lambda: nn.LeakyReLU(0.2)) if activation is nn.LeakyReLU else activation
        layers: list[nn.Module] = []
        sizes = [self.x_dim, *[int(h) for h in hidden]]
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), act()]
        self.body = nn.Sequential(*layers)
        self.continuous_scale = None if continuous_scale is None else float(continuous_scale)
        n_scale = self.n_continuous if self.continuous_scale is None else 0
        self.head = nn.Linear(sizes[-1], self.n_categories + self.n_continuous + n_scale)
        self.config = _config(x_dim=self.x_dim, n_categories=self.n_categories, n_continuous=self.n_continuous,
                              n_noise=self.n_noise, hidden=hidden, activation=activation,
                              continuous_scale=self.continuous_scale)

    def forward(self, x: torch.Tensor) -> CodeDistribution:
        """q(z|x) for a batch ``x`` ``(n, x_dim)`` (or any shape that flattens to it)."""
        out = self.head(self.body(x.reshape(x.shape[0], -1)))
        if self.continuous_scale is not None:
            logits, loc = out.split([self.n_categories, self.n_continuous], -1)
            return CodeDistribution(logits, loc, torch.full_like(loc, self.continuous_scale), self.n_noise)
        logits, loc, log_scale = out.split([self.n_categories, self.n_continuous, self.n_continuous], -1)
        return CodeDistribution(logits, loc, log_scale.clamp(-5.0, 3.0).exp(), self.n_noise)


class NoisyMLPEncoder(nn.Module):
    """An implicit stochastic encoder z = f(x, e), e ~ N(0, I) (AVB's encoder, Mescheder et al.
    2017): a tensor with a path gradient and no density.

    >>> import torch
    >>> tuple(NoisyMLPEncoder(4, 2, noise_dim=3, hidden=(8,))(torch.zeros(5, 4)).shape)
    (5, 2)
    """

    explicit = False

    def __init__(self, x_dim: int, z_dim: int, noise_dim: int = 16, hidden: Sequence[int] = (256,),
                 activation: type[nn.Module] = nn.Softplus):
        super().__init__()
        self.x_dim, self.z_dim, self.noise_dim = int(x_dim), int(z_dim), int(noise_dim)
        self.net = mlp([self.x_dim + self.noise_dim, *hidden, self.z_dim], activation)
        self.config = _config(x_dim=self.x_dim, z_dim=self.z_dim, noise_dim=self.noise_dim, hidden=hidden,
                              activation=activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """A code z = f(x, e) per row of ``x`` (fresh noise e each call), a tensor ``(n, z_dim)``."""
        flat = x.reshape(x.shape[0], -1)
        e = torch.randn(flat.shape[0], self.noise_dim, device=flat.device, dtype=flat.dtype)
        return self.net(torch.cat([flat, e], 1))


class CycleCost(Independent):
    """A deterministic translation scored by an l1 cost: the paper's reading of CycleGAN's cycle
    loss as a negative log-likelihood (section 4). Its samples (``sample``, ``rsample``) and its
    ``mean`` are the translation ``loc`` itself, as CycleGAN's generators are deterministic maps;
    ``log_prob(y)`` is the Laplace log-density ``-sum |y - loc| / scale - d log(2 scale)``, whose
    negative is the l1 cost over ``scale`` plus a constant. It is not the density of its own
    samples (a point mass has none): it is a cost with the form of one, which is how the paper
    reads reconstruction costs.

    >>> import torch
    >>> d = CycleCost(torch.zeros(1, 4), 2.0)
    >>> by_hand = -4 / 2.0 - 4 * math.log(4.0)
    >>> bool((d.rsample() == 0).all()), abs(float(d.log_prob(torch.ones(1, 4))[0]) - by_hand) < 1e-5
    (True, True)
    """

    has_rsample = True

    def __init__(self, loc: torch.Tensor, scale: float):
        super().__init__(Laplace(loc, torch.full_like(loc, float(scale)), validate_args=False), 1,
                         validate_args=False)
        self.loc, self.scale = loc, float(scale)

    def rsample(self, sample_shape=()) -> torch.Tensor:
        """The translation itself (with its gradient), expanded to ``sample_shape``."""
        return self.loc.expand(torch.Size(sample_shape) + self.loc.shape)

    def sample(self, sample_shape=()) -> torch.Tensor:
        """The translation itself, detached."""
        return self.rsample(sample_shape).detach()

    @property
    def mean(self) -> torch.Tensor:
        """The translation."""
        return self.loc


class LaplaceConvTranslator(nn.Module):
    """An image-to-image translator for CycleGAN and DiscoGAN: a small fully convolutional
    network (3x3 convolutions, ReLU) with a sigmoid output, the translation. It returns a
    :class:`CycleCost`: the translation as its sample, scored by the l1 cost over ``scale``.
    ``scale=None`` (the default) is the number of pixels, so that ``-log p`` is the *mean* l1
    over pixels plus a constant: with CycleGAN's λ = 10 in front, exactly its cycle loss (Zhu et
    al. 2017, λ = 10 on a per-pixel mean l1); a small scale would weigh the cycle hundreds of
    times over the adversarial terms and the translators would settle on the identity.

    >>> import torch
    >>> t = LaplaceConvTranslator(side=8, width=4)
    >>> tuple(t(torch.zeros(2, 64)).mean.shape), t(torch.zeros(1, 64)).scale
    ((2, 64), 64.0)
    """

    explicit = True

    def __init__(self, side: int = 28, width: int = 32, depth: int = 3, scale: float | None = None):
        super().__init__()
        self.side = int(side)
        self.scale = float(scale) if scale is not None else float(self.side * self.side)
        layers: list[nn.Module] = []
        ch = 1
        for _ in range(int(depth) - 1):
            layers += [nn.Conv2d(ch, width, 3, padding=1), nn.ReLU()]
            ch = width
        layers.append(nn.Conv2d(ch, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)
        self.config = _config(side=self.side, width=int(width), depth=int(depth),
                              scale=None if scale is None else float(scale))

    def forward(self, x: torch.Tensor) -> CycleCost:
        """The translation of each image of ``x`` ``(n, side*side)``, as a :class:`CycleCost` over rows."""
        n = x.shape[0]
        loc = torch.sigmoid(self.net(x.reshape(n, 1, self.side, self.side))).reshape(n, self.side * self.side)
        return CycleCost(loc, self.scale)


def _linear_shapes(modules) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in modules if isinstance(m, nn.Linear)]


def share_trunk(encoder: nn.Module, critic: nn.Module) -> None:
    """Put ``encoder``'s hidden layers on ``critic``'s: its ``body`` becomes the critic's layers
    up to its output layer, the same module objects (InfoGAN's Q on the discriminator's trunk, as
    Chen et al. 2016 built it). Training then steps the shared layers with the critic, on the
    critic's loss plus the model's terms in them
    (:meth:`~.compile.CompiledObjective.critic_parameters`), and a saved model keeps them shared.

    ``encoder``: a component whose ``body`` is its hidden layers, each followed by its activation
    (:class:`CodeEncoder`); ``critic``: an :class:`MLPCritic` with the same hidden sizes on
    the same input. Raises :class:`~lagrangian_family.errors.ObjectiveError` when they differ.

    >>> q, d = CodeEncoder(6, 3, 1, 2, hidden=(8,)), MLPCritic(6, hidden=(8,), spectral_norm=False)
    >>> share_trunk(q, d)
    >>> q.body[0] is d.net[0]
    True
    """
    body, net = getattr(encoder, "body", None), getattr(critic, "net", None)
    if not isinstance(body, nn.Sequential) or not isinstance(net, nn.Sequential) or len(net) < 2:
        raise ObjectiveError("these modules have no trunk to share", expected="an encoder with a body of hidden layers "
                             "(CodeEncoder) and an MLPCritic",
                             given=f"{type(encoder).__name__} and {type(critic).__name__}",
                             fix="build the encoder and the critic from the toolkit's MLP components")
    trunk = net[:-1]
    if any(isinstance(m, nn.Dropout) and m.p > 0 for m in trunk):
        raise ObjectiveError("the critic has dropout in its hidden layers, so Q would read dropped-out features",
                             expected="a critic without dropout to share its hidden layers with the encoder",
                             given=f"dropout {next(m.p for m in trunk if isinstance(m, nn.Dropout))}",
                             fix="build the critic with dropout=0 (critic_dropout=0), or do not share")
    mine, theirs = _linear_shapes(body), _linear_shapes(trunk)
    if mine != theirs:
        raise ObjectiveError("the encoder's hidden layers and the critic's differ, so they cannot be shared",
                             expected=f"the critic's hidden layers (in, out) {theirs}", given=f"the encoder's {mine}",
                             fix="give the encoder and the critic the same input and hidden sizes (critic_hidden)")
    kinds = [(nn.Linear if isinstance(m, nn.Linear) else repr(m)) for m in body]
    if kinds != [(nn.Linear if isinstance(m, nn.Linear) else repr(m)) for m in trunk]:
        raise ObjectiveError("the encoder's hidden layers and the critic's have other activations, so they cannot "
                             "be shared", expected=f"the critic's layers {[repr(m) for m in trunk]}",
                             given=f"the encoder's {[repr(m) for m in body]}",
                             fix="give the encoder the critic's activation (LeakyReLU 0.2 for MLPCritic)")
    encoder.body = trunk
