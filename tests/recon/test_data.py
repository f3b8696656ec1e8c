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
