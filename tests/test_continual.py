"""The continual evaluator: a fixed seeded class schedule, step s trains only on the classes of
steps 1..s, per-step accuracies in results, a table and a plot."""

from __future__ import annotations

import json

import pytest
import torch

from ddbench.settings.budget import resolve_budget
from ddbench.contracts import DistilledSet, EvalContext
from ddbench.evaluators.continual import ContinualEvaluator, ContinualOptions, class_schedule
from ddbench.host.registry import get_architecture
from tests.conftest import run_cli


def test_the_schedule_is_a_seeded_partition_into_five_steps():
    schedule = class_schedule(10, 5, seed=0)
    assert [len(group) for group in schedule] == [2, 2, 2, 2, 2]
    assert sorted(sum(schedule, [])) == list(range(10))
    assert class_schedule(10, 5, seed=0) == schedule  # fixed
    assert class_schedule(10, 5, seed=1) != schedule  # and seeded
    assert [len(g) for g in class_schedule(100, 5, seed=0)] == [20] * 5
    with pytest.raises(ValueError, match="more steps than the 3 classes"):
        class_schedule(3, 5, seed=0)


class Spy(ContinualEvaluator):
    """Records which classes each step's training images belong to (pixel value = class)."""

    def __init__(self):
        self.seen_by_step = []

    def train_step(self, model, sampler, pool, seen, *args, **kwargs):
        images = sampler.gather(pool)
        self.seen_by_step.append((sorted(seen), sorted(images[:, 0, 0, 0].round().long().unique().tolist())))
        return super().train_step(model, sampler, pool, seen, *args, **kwargs)


def test_step_one_only_ever_sees_step_one_classes(digits):
    labels = torch.arange(10).repeat_interleave(2)
    images = labels.float().view(-1, 1, 1, 1).expand(-1, 1, 16, 16).contiguous()  # every pixel = its class
    distilled = DistilledSet(images=images, labels=labels, method="m", soft_labels="observer")
    arch = get_architecture("convnet3")
    torch.manual_seed(0)
    teacher = arch.build(1, 10, 16).eval()
    context = EvalContext(dataset=digits, verifier_arch=arch, teacher=teacher,
                          budget=resolve_budget("quick", ["epochs=1", "augmentation=none"]), seed=0,
                          device=torch.device("cpu"), options=ContinualOptions(mixing="none"))
    spy = Spy()
    result = spy.evaluate(distilled, context)
    schedule = class_schedule(10, 5, seed=0)
    assert spy.seen_by_step[0] == (sorted(schedule[0]), sorted(schedule[0]))  # step 1: its two classes, no other
    for step, (seen, trained_on) in enumerate(spy.seen_by_step):
        assert seen == trained_on == sorted(sum(schedule[: step + 1], []))
    assert len(result.extras["per_step"]) == 5 and result.extras["classes_seen"] == [2, 4, 6, 8, 10]
    assert result.accuracy == result.extras["per_step"][-1]


def test_run_prints_steps_for_both_methods_and_writes_the_plot(tmp_path):
    result = run_cli("run", "--method", "lic", "--baseline", "sre2l", "--evaluator", "continual", "--ipc", "2",
                     "--observer-epochs", "1", "--budget-set", "epochs=2", "--seeds", "2", "--quiet",
                     "--option", "lic.iterations=3", "--option", "sre2l.iterations=3",
                     "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "after each step" in result.stdout and "step 5 (10 classes)" in result.stdout
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    for method in ("lic", "sre2l"):
        steps = results["methods"][method]["per_step"]
        assert steps["classes_seen"] == [2, 4, 6, 8, 10] and len(steps["per_seed"]) == 2
        assert results["methods"][method]["accuracy"]["per_seed"] == [round(s[-1], 4) for s in steps["per_seed"]]
    assert (tmp_path / "out" / "results-steps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| lic |" in (tmp_path / "out" / "results-steps.md").read_text()
