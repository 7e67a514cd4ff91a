"""PNG grids without torchvision: layout, pixel values read back with Pillow, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lagrangian_family import ObjectiveError
from lagrangian_family.images import ImageError, grid, latent_traversal, read_png, save_grid, save_pairs


def tile(img: np.ndarray, r: int, c: int, h: int, w: int, padding: int, scale: int = 1) -> np.ndarray:
    """The tile at row r, column c of a grid, located by hand."""
    h, w = h * scale, w * scale
    top, left = padding + r * (h + padding), padding + c * (w + padding)
    return img[top:top + h, left:left + w]


@pytest.mark.parametrize("layout", ["flat", "hw", "chw", "torch"])
def test_png_round_trip_pixel_values(tmp_path, layout):
    rng = np.random.default_rng(0)
    x = rng.random((7, 28, 28)).astype(np.float32)
    given = {"flat": x.reshape(7, 784), "hw": x, "chw": x[:, None], "torch": torch.from_numpy(x[:, None])}[layout]
    path = save_grid(given, tmp_path / "g.png", nrow=3, padding=2, pad_value=0.5)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "L"
        img = np.asarray(im)
    assert img.shape == (3 * 30 + 2, 3 * 30 + 2)
    for k in range(7):
        r, c = divmod(k, 3)
        assert np.array_equal(tile(img, r, c, 28, 28, 2), np.rint(x[k] * 255).astype(np.uint8))
    assert img[0, 0] == 128 and img[-1, -1] == 128  # padding and the empty last cells: pad_value


def test_digits_scaled_and_rgb(tmp_path):
    x = np.random.default_rng(1).random((4, 64))
    img = read_png(save_grid(x, tmp_path / "d.png", nrow=4, padding=1, scale=3))
    assert img.shape == (1 + 24 + 1, 4 * 25 + 1)
    expected = np.rint(x[2].reshape(8, 8) * 255).astype(np.uint8).repeat(3, 0).repeat(3, 1)
    assert np.array_equal(tile(img, 0, 2, 8, 8, 1, scale=3), expected)
    rgb = np.random.default_rng(2).random((2, 3, 5, 5))
    img = read_png(save_grid(rgb, tmp_path / "c.png", padding=0))
    assert img.shape == (5, 10, 3)
    assert np.array_equal(img[:, 5:], np.rint(rgb[1].transpose(1, 2, 0) * 255).astype(np.uint8))


def test_value_range_and_uint8():
    g = grid(np.array([[-1.0, 0.0, 1.0, 1.0]]), padding=0, value_range=(-1, 1))
    assert g.tolist() == [[0, 128], [255, 255]]
    assert grid(np.array([[0, 255, 255, 0]], dtype=np.uint8), padding=0).tolist() == [[0, 255], [255, 0]]


def test_pairs_of_rows(tmp_path):
    a = np.zeros((5, 4))
    b = np.ones((5, 4))
    img = read_png(save_pairs(a, b, tmp_path / "p.png", nrow=3, padding=0, pad_value=0.5))
    # rows of tiles: a[0:3], b[0:3], a[3:5] + blank, b[3:5] + blank
    assert img.shape == (4 * 2, 3 * 2)
    assert img[0:2].max() == 0 and img[2:4].min() == 255
    assert img[4:6, :4].max() == 0 and img[6:8, :4].min() == 255
    assert set(img[4:8, 4:].ravel().tolist()) == {128}


@pytest.mark.parametrize("bad, match", [
    (np.zeros((3, 10)), "not square"),
    (np.full((2, 4), 2.0), "outside"),
    (np.full((2, 4), np.nan), "NaN"),
    (np.zeros((0, 4)), "no images"),
    (np.zeros((2, 5, 4, 4)), "channel"),
    (np.array([["a"]]), "numbers"),
])
def test_bad_images_are_typed_errors(bad, match, tmp_path):
    with pytest.raises(ImageError, match=match):
        save_grid(bad, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_bad_paths_and_options(tmp_path):
    x = np.zeros((2, 4))
    with pytest.raises(ImageError, match="does not exist"):
        save_grid(x, tmp_path / "missing" / "x.png")
    with pytest.raises(ImageError, match="folder"):
        save_grid(x, tmp_path)
    for kw in ({"nrow": 0}, {"padding": -1}, {"scale": 0}, {"pad_value": 2.0}):
        with pytest.raises(ObjectiveError):
            grid(x, **kw)
    assert grid(np.full((1, 4), 1.5), clip=True, padding=0).min() == 255


def test_latent_traversal_varies_one_coordinate_per_row(tmp_path):
    from torch import nn
    from torch.distributions import Independent, Normal

    from lagrangian_family.backends.torch import GaussianMLPEncoder, Model, StandardNormalPrior, compile_objective

    class Show(nn.Module):
        """A decoder whose mean shows z: pixel i of the 2x2 image is (z_i + 3) / 6."""

        def __init__(self):
            super().__init__()
            self.s = nn.Parameter(torch.ones(()))

        def forward(self, z):
            return Independent(Normal((z + 3.0) / 6.0 * self.s, 1.0), 1)

    model = Model(compile_objective("vae", encoder=GaussianMLPEncoder(4, 4, hidden=(4,)), decoder=Show(),
                                    prior=StandardNormalPrior(4)))
    base = torch.tensor([0.3, -0.6, 1.2, 0.0])
    values = [-3.0, 0.0, 3.0]
    img = latent_traversal(model, tmp_path / "t.png", z=base, dims=[1, 3], values=values, padding=0)
    assert np.array_equal(read_png(tmp_path / "t.png"), img)
    assert img.shape == (2 * 2, 3 * 2)
    for r, d in enumerate([1, 3]):
        for c, v in enumerate(values):
            z = base.clone()
            z[d] = v
            expected = np.rint(((z + 3) / 6).numpy().reshape(2, 2) * 255).astype(np.uint8)
            assert np.array_equal(tile(img, r, c, 2, 2, 0), expected)
    # from an encoded image and from a prior draw: the shape only
    assert latent_traversal(model, x=torch.zeros(4), values=values, padding=0).shape == (4 * 2, 3 * 2)
    with pytest.raises(ImageError):
        latent_traversal(model, dims=[4])
