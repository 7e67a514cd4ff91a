"""TensorBoard logs from the Trainer, read back from the event files: clean tags, the values the
Trainer logged, the table of tags, sample grids; and nothing that changes the training."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch

import lagrangian_family as lf
from lagrangian_family.backends.torch import (
    BernoulliMLPDecoder,
    GaussianMLPEncoder,
    Lagrangian,
    StandardNormalPrior,
    TensorBoardLogger,
    Trainer,
    compile_objective,
    paper_preset,
)
from lagrangian_family.backends.torch.tensorboard import clean_tag

from .helpers import binary_data, tiny_models

pytest.importorskip("tensorboard", reason="the tensorboard extra: pip install -e '.[tensorboard]'")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

X_DIM = 16  # 4x4 images


def _lagrangian_with_critic(x_dim=X_DIM, seed=0):
    torch.manual_seed(seed)
    enc, dec, prior = GaussianMLPEncoder(x_dim, 2, hidden=(16,)), BernoulliMLPDecoder(2, x_dim, hidden=(16,)), \
        StandardNormalPrior(2)
    lag = Lagrangian("-1 * I_q(x;z) + JS(q(z) || p(z))", [("KL(q(x,z) || p(x,z))", 8.0),
                                                         ("MMD(q(z) || p(z))", 0.002)])
    return lag.compile(encoder=enc, decoder=dec, prior=prior), lag


def _events(folder) -> EventAccumulator:
    ea = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    ea.Reload()
    return ea


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tb")
    loss_fn, lag = _lagrangian_with_critic()
    data = binary_data(64, X_DIM)
    trainer = Trainer(loss_fn, data, batch_size=16, updater=paper_preset(lag), seed=0, progress=False,
                      log_every=10, tensorboard=TensorBoardLogger(folder, image_every=15, n_images=9))
    history = trainer.train(30)
    return folder, history, loss_fn


EXPECTED = {
    "loss/model", "loss/critic", "objective/value",
    "terms/E_qxz_log_px_given_z", "terms/KL_qxz_pxz", "terms/MMD_qz_pz", "terms/JS_qz_pz",
    "constraint/KL_qxz_pxz", "constraint/MMD_qz_pz",
    "violation/KL_qxz_pxz", "violation/MMD_qz_pz",
    "lambda/KL_qxz_pxz", "lambda/MMD_qz_pz",
}


def test_scalars_are_under_clean_tags(logged):
    folder, history, _ = logged
    tags = set(_events(folder).Tags()["scalars"])
    assert tags == EXPECTED
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-/]+", t) for t in tags)


def test_scalars_are_the_trainer_s_rows(logged):
    folder, history, _ = logged
    ea = _events(folder)
    assert [r["step"] for r in history] == [10, 20, 30]
    raw = {"loss/model": "loss", "loss/critic": "critic_loss", "objective/value": "value",
           "terms/MMD_qz_pz": "MMD(q(z) || p(z))", "terms/JS_qz_pz": "JS(q(z) || p(z))",
           "constraint/KL_qxz_pxz": "constraint KL(q(x,z) || p(x,z))",
           "violation/MMD_qz_pz": "violation MMD(q(z) || p(z))",
           "lambda/KL_qxz_pxz": "lambda KL(q(x,z) || p(x,z))", "lambda/MMD_qz_pz": "lambda MMD(q(z) || p(z))"}
    for tag, key in raw.items():
        events = ea.Scalars(tag)
        assert [e.step for e in events] == [10, 20, 30], tag
        for e, row in zip(events, history):
            assert e.value == pytest.approx(row[key], rel=1e-6, abs=1e-7), tag  # stored as float32
    # violation = constraint - ε, as logged
    for row in history:
        assert row["violation KL(q(x,z) || p(x,z))"] == pytest.approx(row["constraint KL(q(x,z) || p(x,z))"] - 8.0)


def test_the_text_summary_maps_tags_to_texts(logged):
    folder, _, _ = logged
    ea = _events(folder)
    (tag,) = [t for t in ea.Tags()["tensors"] if t.startswith("tags")]
    text = ea.Tensors(tag)[-1].tensor_proto.string_val[0].decode()
    assert "| `terms/E_qxz_log_px_given_z` | `E_{q(x,z)}[log p(x&#124;z)]` |" in text
    assert "| `lambda/MMD_qz_pz` | `MMD(q(z) &#124;&#124; p(z))` |" in text


def test_sample_grids_every_n_steps(logged):
    folder, _, loss_fn = logged
    from PIL import Image

    images = _events(folder).Images("samples")
    assert [i.step for i in images] == [15, 30]
    # 9 samples of 4x4 pixels, 3 per row, 2 pixels apart and around: 3 * (4 + 2) + 2 = 20 pixels square
    img = np.asarray(Image.open(io.BytesIO(images[-1].encoded_image_string)))
    assert img.shape[:2] == (20, 20)
    # the last grid is the trained model's decoder means at the logger's fixed draws of p(z)
    from lagrangian_family.backends.torch import Model
    from lagrangian_family.images import grid

    expected = grid(Model(loss_fn).sample(9, seed=0), clip=True)
    got = img if img.ndim == 2 else img[..., 0]
    assert np.array_equal(got, expected)


def test_tensorboard_does_not_change_the_training(tmp_path):
    data = binary_data(64, X_DIM)

    def run(tb):
        loss_fn, lag = _lagrangian_with_critic(seed=3)
        torch.manual_seed(5)
        Trainer(loss_fn, data, batch_size=16, updater=paper_preset(lag), seed=1, progress=False, log_every=5,
                tensorboard=tb).train(12)
        return loss_fn.state_dict()

    plain = run(None)
    logged = run(TensorBoardLogger(tmp_path / "tb", image_every=4))
    assert plain.keys() == logged.keys()
    assert all(torch.equal(plain[k], logged[k]) for k in plain)
    assert list((tmp_path / "tb").iterdir())


def test_a_user_writer_is_left_open(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    enc, dec, prior = tiny_models(0)
    loss_fn = compile_objective("vae", encoder=enc, decoder=dec, prior=prior)
    writer = SummaryWriter(str(tmp_path))
    try:
        Trainer(loss_fn, binary_data(32), batch_size=8, seed=0, progress=False, log_every=2,
                tensorboard=writer).train(4)
        writer.add_scalar("mine", 1.0, 0)  # still open
        writer.flush()
        tags = set(_events(tmp_path).Tags()["scalars"])
    finally:
        writer.close()
    assert {"loss/model", "objective/value", "mine", "terms/E_qxz_log_px_given_z"} <= tags
    assert not _events(tmp_path).Tags()["images"]  # 6-dimensional x: no grids (images=None)


def test_grids_asked_for_data_that_are_not_images():
    enc, dec, prior = tiny_models(0)
    loss_fn = compile_objective("vae", encoder=enc, decoder=dec, prior=prior)
    with pytest.raises(lf.ObjectiveError, match="cannot draw sample grids") as e:
        Trainer(loss_fn, binary_data(32), batch_size=8, progress=False,
                tensorboard=TensorBoardLogger("unused", images=True))
    assert "image_shape" in e.value.fix
    # with a shape they can be laid out: 6 = 2x3
    Trainer(loss_fn, binary_data(32), batch_size=8, progress=False,
            tensorboard=TensorBoardLogger("unused", images=True, image_shape=(2, 3)))


@pytest.mark.parametrize("bad", [dict(image_every=0), dict(n_images=-1), dict(images="yes"), dict()])
def test_bad_logger_arguments(bad):
    args = {"log_dir": "unused", **bad} if bad else {}
    with pytest.raises(lf.ObjectiveError):
        TensorBoardLogger(**args)
    with pytest.raises(lf.ObjectiveError, match="bad tensorboard argument"):
        from lagrangian_family.backends.torch.tensorboard import as_logger

        as_logger(3)


def _all_terms() -> list[str]:
    """Every atom E_F[log r], every divergence between the two joints' matching marginals or joints
    (each family, each direction), the expected KLs between conditionals, both MIs, and the zoo's
    terms, as the parser prints them."""
    dens = ["x", "z", "z|x", "x|z", "x,z"]
    texts = [f"E_{{{f}(x,z)}}[log {r}({d})]" for f in "pq" for r in "pq" for d in dens]
    for v in ("x", "z", "x,z"):
        for fam in ("KL", "JS", "MMD", "W"):
            texts += [f"{fam}(q({v}) || p({v}))", f"{fam}(p({v}) || q({v}))"]
    for a, b in (("z", "x"), ("x", "z")):
        for f, g in ("qp", "pq"):
            texts += [f"E_{{{f}({b})}}[KL({f}({a}|{b}) || {g}({a}|{b}))]",
                      f"E_{{{f}({b})}}[KL({f}({a}|{b}) || {g}({a}))]"]
    texts += ["I_q(x;z)", "I_p(x;z)"]
    out = {str(t) for text in texts for t in lf.parse(text)}
    out |= {str(t) for name in lf.zoo.names() for t in lf.zoo.get(name)}
    return sorted(out)


def test_clean_tags_of_every_term_are_tags_and_distinct():
    texts = _all_terms()
    assert len(texts) > 40
    tags = [clean_tag(t) for t in texts]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+", t) for t in tags)
    assert len(set(tags)) == len(texts), [t for t in tags if tags.count(t) > 1]


def test_colliding_names_get_distinct_tags():
    logger = TensorBoardLogger("unused")
    assert logger.tag("terms", "a b") == "terms/a_b"
    assert logger.tag("terms", "a_b") == "terms/a_b_2"
    assert logger.tag("terms", "a b") == "terms/a_b"


def test_a_resumed_run_hides_the_events_after_its_checkpoint(tmp_path):
    data = binary_data(64, X_DIM)

    class Killed(Exception):
        pass

    def kill_at_15(trainer, out):
        if trainer.step_count == 15:
            raise Killed

    def trainer(seed, **kw):
        loss_fn, lag = _lagrangian_with_critic(seed=seed)
        return Trainer(loss_fn, data, batch_size=16, updater=paper_preset(lag), seed=0, progress=False,
                       log_every=5, tensorboard=tmp_path / "tb", checkpoint=tmp_path / "ck.pt", **kw)

    with pytest.raises(Killed):  # rows of steps 5, 10 and 15 written, the checkpoint of step 10
        trainer(0, checkpoint_every=10, callback=kill_at_15).train(20)
    resumed = trainer(4)  # other weights: all come from the checkpoint
    resumed.load(tmp_path / "ck.pt")
    history = resumed.train(10)
    events = _events(tmp_path / "tb").Scalars("loss/model")
    assert [e.step for e in events] == [5, 10, 15, 20]
    assert [e.value for e in events][2:] == pytest.approx([r["loss"] for r in history], rel=1e-6)
