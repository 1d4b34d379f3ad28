"""Every in-tree method passes the plugin contract checker a third-party author would call
(ddbench.testing.check_distiller), and the checker catches each kind of broken plugin."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from baselines.squeeze import SqueezeDistiller
from baselines.sre2l import SRe2LDistiller
from ddbench.api import DistilledSet, Distiller
from ddbench.distillers.random import RandomDistiller
from ddbench.testing import check_distiller
from lic_plugin.distiller import LICDistiller

CASES = {
    "lic": (LICDistiller(), {"iterations": 3, "subset_size": 10}, {"n": 3, "lr": -1.0, "loss": "huber"}),
    "sre2l": (SRe2LDistiller(), {"iterations": 3}, {"iterations": -1}),
    "squeeze": (SqueezeDistiller(), {}, {"n": 3}),
    "random": (RandomDistiller(), {}, {}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_in_tree_methods_keep_the_contract(name):
    distiller, options, bad = CASES[name]
    distilled = check_distiller(distiller, options=options, bad_options=bad)
    assert len(distilled.images) == 3 * 2


@dataclass
class NoiseOptions:
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise ValueError(f"noise option scale={self.scale}: must be positive")


class Noise(Distiller):
    """A broken-on-purpose example: its faults are switched on one at a time."""

    name = "noise"
    options_class = NoiseOptions

    def __init__(self, fault: str = "") -> None:
        self.fault = fault

    def distill(self, task):
        seed = torch.seed() if self.fault == "unseeded" else task.seed
        generator = torch.Generator().manual_seed(seed)
        count = task.ipc + (1 if self.fault == "ipc" else 0)
        images = torch.rand(task.num_classes * count, *task.image_shape, generator=generator) * 0.1
        labels = torch.arange(task.num_classes).repeat_interleave(count)
        return DistilledSet(images=images, labels=labels, method=self.name, soft_labels="observer")


def test_a_correct_third_party_method_passes():
    check_distiller(Noise(), bad_options={"scale": 0.0}, installed=False)


@pytest.mark.parametrize("fault,message", [("ipc", "expected 2 images per class"), ("unseeded", "differ")])
def test_the_checker_catches_broken_methods(fault, message):
    with pytest.raises(AssertionError, match=message):
        check_distiller(Noise(fault), installed=False)


def test_the_checker_catches_an_option_it_should_refuse_and_an_unregistered_name():
    with pytest.raises(AssertionError, match="scale=5.0 was accepted"):
        check_distiller(Noise(), bad_options={"scale": 5.0}, installed=False)
    with pytest.raises(Exception, match="noise"):
        check_distiller(Noise())  # installed=True: no entry point registers it
