"""Ready-made components: shapes, reductions over data dimensions, devices and dtypes."""

import subprocess
import sys
from pathlib import Path

import torch

from lagrangian_family.backends.torch import (
    BernoulliConvDecoder,
    DataSamplerPrior,
    GaussianConvDecoder,
    GaussianConvEncoder,
    GaussianMLPDecoder,
    LaplaceMLPDecoder,
    StandardNormalPrior,
    Trainer,
    compile_objective,
)


def test_log_prob_sums_over_data_dimensions():
    torch.manual_seed(0)
    for dec in (GaussianMLPDecoder(2, (3, 4), hidden=(8,)), LaplaceMLPDecoder(2, (3, 4), hidden=(8,), scale=0.5)):
        d = dec(torch.randn(5, 2))
        x = torch.randn(5, 3, 4)
        assert d.log_prob(x).shape == (5,)
        assert torch.allclose(d.log_prob(x), d.base_dist.log_prob(x).sum((1, 2)))


def test_conv_vae_on_small_images_trains():
    torch.manual_seed(0)
    enc = GaussianConvEncoder(channels=1, image_size=8, z_dim=3, width=4, hidden=16)
    dec = BernoulliConvDecoder(z_dim=3, channels=1, image_size=8, width=4, hidden=16)
    x = torch.bernoulli(torch.full((16, 1, 8, 8), 0.4))
    fn = compile_objective("vae", encoder=enc, decoder=dec, prior=StandardNormalPrior(3), example_x=x)
    hist = Trainer(fn, x, batch_size=8, progress=False, log_every=1).train(4)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in hist)
    g = GaussianConvDecoder(z_dim=3, channels=1, image_size=8, width=4, hidden=16)
    assert g(torch.zeros(2, 3)).log_prob(torch.zeros(2, 1, 8, 8)).shape == (2,)


def test_prior_buffers_follow_dtype_and_are_not_saved():
    p = StandardNormalPrior(3).double()
    assert p.sample(4).dtype == torch.float64
    assert p.state_dict() == {}
    d = DataSamplerPrior(torch.arange(12.0).reshape(6, 2))
    assert d.state_dict() == {} and d.sample(3).shape == (3, 2)


def test_raw_distribution_prior_is_accepted():
    from torch.distributions import Independent, Normal

    from .helpers import binary_data, tiny_models

    enc, dec, _ = tiny_models()
    prior = Independent(Normal(torch.zeros(2), torch.ones(2)), 1)
    fn = compile_objective("infovae", encoder=enc, decoder=dec, prior=prior)
    assert torch.isfinite(fn(binary_data()).loss)


def test_importing_the_package_does_not_import_torch():
    code = "import sys, lagrangian_family; assert 'torch' not in sys.modules, 'torch imported'"
    root = Path(__file__).resolve().parents[3]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_location_scale_decoders_against_hand_densities():
    import math

    torch.manual_seed(0)
    z, x = torch.randn(4, 2), torch.randn(4, 3)
    def normal(x, m, s):
        return -((x - m) ** 2) / (2 * s * s) - torch.log(s) - 0.5 * math.log(2 * math.pi)

    def laplace(x, m, b):
        return -(x - m).abs() / b - torch.log(2 * b)

    for cls, hand in ((GaussianMLPDecoder, normal), (LaplaceMLPDecoder, laplace)):
        fixed = cls(2, 3, hidden=(8,), scale=0.5)
        mu = fixed.net(z)
        assert torch.allclose(fixed(z).log_prob(x), hand(x, mu, torch.full_like(mu, 0.5)).sum(1), atol=1e-5)
        learned = cls(2, 3, hidden=(8,))
        out = learned.net(z).reshape(4, 2, 3)
        scale = out[:, 1].clamp(-10.0, 10.0).exp()
        assert torch.allclose(learned(z).log_prob(x), hand(x, out[:, 0], scale).sum(1), atol=1e-5)


def test_samples_keep_the_log_probability_only_without_a_path_gradient():
    from lagrangian_family.backends.torch.samples import draw, probe

    from .helpers import binary_data, tiny_models

    enc, dec, prior = tiny_models()  # Gaussian encoder (rsample), Bernoulli decoder (no rsample)
    comps = probe(enc, dec, prior)
    torch.manual_seed(0)
    s = draw(binary_data(8), comps, ("q_dist", "z_q", "z_p", "dec_p", "x_p"))
    assert s.z_q.requires_grad and s.z_q_logp is None
    assert torch.allclose(s.x_p_logp, s.dec_p.log_prob(s.x_p))
    assert set(s.x_p.unique().tolist()) <= {0.0, 1.0}


def test_public_names_of_the_backend():
    import lagrangian_family.backends.torch as backend
    from lagrangian_family.backends.torch import components

    names = {"GaussianMLPEncoder", "GaussianConvEncoder", "DeterministicMLPEncoder", "BernoulliMLPDecoder",
             "GaussianMLPDecoder", "LaplaceMLPDecoder", "BernoulliConvDecoder", "GaussianConvDecoder",
             "DeterministicMLPDecoder", "StandardNormalPrior", "DataSamplerPrior", "mlp",
             # chosen by the recipes (recipes.py)
             "MLPCritic", "CodePrior", "CodeEncoder", "CodeDistribution", "NoisyMLPEncoder", "LaplaceConvTranslator",
             "CycleCost", "share_trunk"}
    assert set(components.__all__) == names
    assert names <= set(backend.__all__) and len(backend.__all__) == len(set(backend.__all__))
    assert all(getattr(backend, n) is getattr(components, n) for n in names)
    assert {"compile_objective", "Lagrangian", "Trainer", "metrics", "MMDEstimator"} <= set(backend.__all__)


def test_generator_batch_norm_normalises_hidden_layers_and_uses_running_stats_in_eval():
    from lagrangian_family.backends.torch.components import DeterministicMLPDecoder
    from lagrangian_family.backends.torch.model import build_component, component_spec

    torch.manual_seed(0)
    g = DeterministicMLPDecoder(3, (5,), hidden=(7, 6), activation=torch.nn.LeakyReLU, output="sigmoid",
                                batch_norm=True)
    norms = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert [m.num_features for m in norms] == [7, 6]
    # training mode: each hidden unit is normalised over the batch (checked on the first layer by hand)
    z = torch.randn(64, 3) * 4 + 2
    h = g.net[0](z)
    expected = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + 1e-5)
    torch.testing.assert_close(g.net[1](h), expected, rtol=1e-4, atol=1e-4)
    g.train()
    norm = g.net[1]
    before = norm.running_mean.clone()
    g(z)
    assert not torch.allclose(norm.running_mean, before)  # training updates the running statistics
    # eval mode: the running statistics (by hand), so a sample does not depend on the rest of its batch
    g.eval()
    with torch.no_grad():
        h = g.net[0](z[:3])
        expected = (h - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps) * norm.weight + norm.bias
        torch.testing.assert_close(norm(h), expected)
        torch.testing.assert_close(g(z[:1]), g(z)[:1])
    # the option survives the component's description; the plain generator's description is unchanged
    spec = component_spec(g)
    assert spec["config"]["batch_norm"] is True
    rebuilt = build_component(spec)
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in rebuilt.modules()) == 2
    assert "batch_norm" not in component_spec(DeterministicMLPDecoder(3, (5,), hidden=(4,)))["config"]


def test_share_trunk_puts_q_on_the_critics_layers_or_says_why_not():
    import pytest
    import torch.nn.functional as F

    import lagrangian_family as lf
    from lagrangian_family.backends.torch import CodeEncoder, MLPCritic, share_trunk

    q, d = CodeEncoder(6, 3, 1, 2, hidden=(8, 8)), MLPCritic(6, hidden=(8, 8), spectral_norm=False)
    share_trunk(q, d)
    x = torch.randn(4, 6)
    # Q's code is its head on the critic's hidden features, computed here with the critic's weights
    h = F.leaky_relu(d.net[2](F.leaky_relu(d.net[0](x), 0.2)), 0.2)
    torch.testing.assert_close(q(x).logits, q.head(h)[:, :3])
    assert {id(p) for p in q.body.parameters()} == {id(p) for p in d.net[:-1].parameters()}
    with pytest.raises(lf.ObjectiveError, match="differ") as e:
        share_trunk(CodeEncoder(6, 3, 1, 2, hidden=(8,)), MLPCritic(6, hidden=(16,)))
    assert "(6, 16)" in str(e.value) and "fix:" in str(e.value)
    with pytest.raises(lf.ObjectiveError, match="no trunk"):
        share_trunk(q, torch.nn.Linear(6, 1))
    own = CodeEncoder(6, 3, 1, 2, hidden=(8, 8))
    body = own.body
    with pytest.raises(lf.ObjectiveError, match="dropout"):
        share_trunk(own, MLPCritic(6, hidden=(8, 8), dropout=0.2))
    with pytest.raises(lf.ObjectiveError, match="other activations"):
        share_trunk(CodeEncoder(6, 3, 1, 2, hidden=(8,), activation=torch.nn.Softplus), MLPCritic(6, hidden=(8,)))
    assert own.body is body  # a refused call leaves the encoder as it was
