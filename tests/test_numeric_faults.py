"""A loss that turns NaN or infinite stops that method with a message naming it and the knob to
turn, instead of producing a table of garbage; the other methods of the run still complete."""

from __future__ import annotations

import pytest
import torch

from baselines.sre2l import SRe2LDistiller, SRe2LOptions
from ddbench.contracts import DistillTask, DistilledSet, EvalContext
from ddbench.settings.budget import resolve_budget
from ddbench.evaluators.training import NonFiniteLossError
from ddbench.host.registry import get_architecture, get_evaluator
from lic_plugin.distiller import LICDistiller
from lic_plugin.options import LICOptions


def poisoned_observer(digits, after_calls: int = 0):
    """A convnet3-bn whose last block outputs NaN once it has run ``after_calls`` times."""
    arch = get_architecture("convnet3-bn")
    torch.manual_seed(0)
    model = arch.build(digits.channels, digits.num_classes, digits.image_size).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    calls = {"n": 0}

    def poison(module, inputs, output):
        calls["n"] += 1
        return output * float("nan") if calls["n"] > after_calls else output

    model.get_submodule(arch.default_feature_layer).register_forward_hook(poison)
    return arch, model


def _task(digits, observer, options):
    arch, model = observer
    return DistillTask(dataset=digits, observer=model, observer_arch=arch, ipc=1, device=torch.device("cpu"),
                       seed=0, options=options)


def test_lic_stops_on_a_nan_loss_and_says_where(digits):
    # scoring (10 forward passes, one per class) is clean; compensation turns NaN
    observer = poisoned_observer(digits, after_calls=10)
    with pytest.raises(NonFiniteLossError, match=r"lic: the Eq. 8 loss became NaN .* iteration 1 of batch 0 .* lower lic.lr"):
        LICDistiller().distill(_task(digits, observer, LICOptions(iterations=3, subset_size=8)))


def test_sre2l_stops_on_a_nan_loss(digits):
    observer = poisoned_observer(digits, after_calls=0)
    with pytest.raises(NonFiniteLossError, match=r"sre2l: the recovery loss became NaN or infinite .* lower sre2l.lr"):
        SRe2LDistiller().distill(_task(digits, observer, SRe2LOptions(iterations=2)))


def test_evaluation_stops_on_a_nan_loss(digits):
    distilled = DistilledSet(images=torch.full((10, 1, 16, 16), 1e38), labels=torch.arange(10), method="m",
                             soft_labels="hard")
    context = EvalContext(dataset=digits, verifier_arch=get_architecture("convnet3"), teacher=None,
                          budget=resolve_budget("quick", ["epochs=2"]), seed=0, device=torch.device("cpu"),
                          options=get_evaluator("train").options_class())
    with pytest.raises(NonFiniteLossError, match="NaN or infinite"):
        get_evaluator("train").evaluate(distilled, context)
