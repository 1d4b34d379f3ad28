"""RDED as a third-party plugin would be: the contract checker passes, its defining step keeps
the crops the observer finds most realistic (lower loss than every discarded one), and the
stitched layout is the authors'."""

from __future__ import annotations

import pytest
import torch

from baselines.rded import RDEDDistiller, RDEDOptions, crop_losses, random_crops, resolve_factor, select_crops, stitch
from ddbench.host.registry import get_architecture
from ddbench.testing import check_distiller, tiny_dataset


@pytest.mark.parametrize("factor", [1, 2])
def test_rded_keeps_the_plugin_contract(factor):
    distilled = check_distiller(RDEDDistiller(), options={"pool": 10, "crops": 2, "factor": factor},
                                bad_options={"pool": 0, "crops": 0, "factor": -1, "min_scale": 0.0})
    assert distilled.tile_grid == factor


def test_kept_crops_have_lower_observer_loss_than_discarded_ones():
    dataset = tiny_dataset()
    torch.manual_seed(0)
    observer = get_architecture("convnet2-bn").build(3, 3, 16).eval()
    images = dataset.train.load(torch.nonzero(dataset.train.labels == 1).flatten())
    crops = random_crops(images, 4, 8, (0.08, 1.0), torch.Generator().manual_seed(0))
    assert crops.shape == (4, len(images), 3, 8, 8)
    losses = crop_losses(observer, crops, 1, 16, batch=7)
    chosen, crop_index = select_crops(losses, keep=5)
    best = losses.min(dim=0).values
    assert torch.equal(losses[crop_index, chosen], best[chosen])  # each candidate keeps its best crop
    discarded = torch.ones(len(images), dtype=torch.bool)
    discarded[chosen] = False
    assert best[chosen].max() <= best[discarded].min()  # the kept are the most realistic
    assert torch.all(best[chosen][1:] >= best[chosen][:-1])  # best first
    direct = torch.nn.functional.cross_entropy(
        observer(torch.nn.functional.pad(crops[0, :1], (4, 4, 4, 4))), torch.tensor([1]))
    assert float(losses[0, 0]) == pytest.approx(float(direct), rel=1e-5)  # zero-padded, centred, as scored


def test_stitched_layout_and_automatic_factor():
    tiles = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1).expand(8, 1, 2, 2)
    images = stitch(tiles, 2)
    assert images.shape == (2, 1, 4, 4)
    assert images[0, 0, 0, 0] == 0 and images[0, 0, 0, 2] == 1 and images[0, 0, 2, 0] == 2 and images[1, 0, 2, 2] == 7
    assert resolve_factor(RDEDOptions(), 32) == 1 and resolve_factor(RDEDOptions(), 64) == 1
    assert resolve_factor(RDEDOptions(), 128) == 2 and resolve_factor(RDEDOptions(factor=3), 32) == 3


def test_rded_refuses_a_factor_that_does_not_divide_the_side():
    # squeeze and LIC cut uneven grids; RDED's crops are cut at one size and stitched edge to edge
    RDEDDistiller().check_setup(RDEDOptions(factor=4), (3, 16, 16), ipc=1)
    with pytest.raises(ValueError, match="factor=3.*divisible by it"):
        RDEDDistiller().check_setup(RDEDOptions(factor=3), (3, 16, 16), ipc=1)
