"""recon.data: seeded splits from data configs, and their images-only form."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from data_tools.datasets import SyntheticDataset, SyntheticImages
from operators import Parallel2D
from recon.data import build_split


def _ct_config(**extra):
    return OmegaConf.create(
        {
            "factor": 2,
            "noise": {"_target_": "data_tools.noise.GaussianNoise", "relative": 0.05},
            "splits": {"train": {"phantom": "random_ellipses", "size": 4, "seed": 5}},
            **extra,
        }
    )


def test_images_only_ct_split_holds_the_same_images_as_the_full_split():
    geometry = Parallel2D((24, 24), n_angles=6)
    full = build_split(_ct_config(), "train", geometry)
    images = build_split(_ct_config(images_only=True), "train", geometry)
    assert isinstance(full, SyntheticDataset) and isinstance(images, SyntheticImages)
    assert len(images) == len(full) == 4
    for i in range(4):
        (x,) = images[i]
        assert x.shape == (1, 24, 24)
        torch.testing.assert_close(x, full[i][0], rtol=0, atol=0)
    assert float(images[0][0].std()) > 0  # real ellipses, not zeros


def test_images_only_split_of_a_named_operator_matches_its_full_split():
    data = OmegaConf.create(
        {
            "simulation": {
                "operator": {
                    "_target_": "operators.LineSensor",
                    "grid": {"_target_": "operators.PATGrid", "shape": [16, 16]},
                }
            },
            "splits": {"test": {"phantom": "vessels", "size": 2, "seed": 0}},
        }
    )
    full = build_split(data, "test")
    data.images_only = True
    images = build_split(data, "test")
    torch.testing.assert_close(images[1][0], full[1][0], rtol=0, atol=0)
    assert len(images[1]) == 1


def test_images_only_must_be_a_boolean():
    with pytest.raises(ValueError, match="images_only must be true or false"):
        build_split(_ct_config(images_only="yes"), "train", Parallel2D((8, 8), n_angles=2))


def test_few_ellipses_family_draws_a_handful_of_ellipses_per_image():
    from data_tools.phantoms import FEW_ELLIPSES, PHANTOMS, random_ellipse_params
    from recon.data import make_phantom

    counts = (random_ellipse_params(2000, generator=torch.Generator().manual_seed(0),
                                    **FEW_ELLIPSES)[..., 0] != 0).sum(1).double()  # fmt: skip
    assert counts.min() >= 1 and counts.max() <= 8
    assert 3.7 < float(counts.mean()) < 4.3  # Poisson(4), clipped to [1, 8]
    assert {"random_ellipses", "few_ellipses"} <= set(PHANTOMS)
    # no empty (constant) image, even at 32²: every semi-axis is at least 0.05
    draw = PHANTOMS["few_ellipses"]
    gen = torch.Generator().manual_seed(3)
    spreads = torch.stack([draw(gen)((32, 32)).std() for _ in range(2000)])
    assert float(spreads.min()) > 0
    # the same table rendered at two resolutions: the fine grid downsamples to the coarse truth
    data = _ct_config()
    data.splits.train.phantom = "few_ellipses"
    geometry = Parallel2D((24, 24), n_angles=6)
    x, y = build_split(data, "train", geometry)[0]
    assert x.shape == (1, 24, 24) and y.shape[-2] == 6 and float(x.max()) > 0.5
    image = make_phantom("few_ellipses")((24, 24), generator=torch.Generator().manual_seed(1))
    assert image.shape == (24, 24) and float(image.std()) > 0


def test_smooth_ellipses_family_renders_the_few_ellipses_as_bumps():
    from data_tools.phantoms import PHANTOMS

    flat = PHANTOMS["few_ellipses"](torch.Generator().manual_seed(5))((32, 32))
    smooth = PHANTOMS["smooth_ellipses"](torch.Generator().manual_seed(5))((32, 32))
    assert torch.equal(smooth > 0, flat > 0) or bool(((smooth > 0) <= (flat > 0)).all())
    assert float(smooth.max()) == 1.0 and float((smooth - flat).abs().max()) > 0.1


def test_a_phantom_registered_in_data_tools_is_named_by_a_config():
    from data_tools.phantoms import PHANTOMS, ellipses_image, register_phantom

    def square(generator):
        return lambda shape: ellipses_image([[1.0, 0.5, 0.5, 0.0, 0.0, 0.0]], shape)

    register_phantom("test_square", square)
    try:
        data = _ct_config()
        data.splits.train.phantom = "test_square"
        x, y = build_split(data, "train", Parallel2D((16, 16), n_angles=4))[0]
        assert x.shape == (1, 16, 16) and y.shape[-2] == 4 and float(x.max()) == 1.0
    finally:
        del PHANTOMS["test_square"]
    with pytest.raises(ValueError, match="unknown phantom 'test_square'; known: random_ellipses"):
        build_split(data, "train", Parallel2D((16, 16), n_angles=4))[0]


def test_measurements_only_strips_the_ground_truth_of_the_train_split_alone():
    from omegaconf import OmegaConf

    from operators import Parallel2D
    from recon.data import build_split

    split = {"phantom": "random_ellipses", "size": 2, "seed": 7}
    data = OmegaConf.create(
        {"factor": 2, "measurements_only": True, "splits": {"train": split, "test": split}}
    )
    geometry = Parallel2D((16, 16), n_angles=4)
    train, test = build_split(data, "train", geometry), build_split(data, "test", geometry)
    assert len(train[0]) == 1 and train[0][0].shape == (1, 4, 23)
    x, y = test[0]
    assert torch.equal(train[0][0], y)  # the same measurements, without x
    data.measurements_only = "yes"
    with pytest.raises(ValueError, match="measurements_only must be true or false"):
        build_split(data, "train", geometry)
