"""The relabel evaluator: region sampling over tile layouts, the KD loss, stored vs online
labels, label storage accounting, and the validation split."""

from __future__ import annotations

import pytest
import torch

from ddbench import registry
from ddbench.budget import resolve_budget
from ddbench.contracts import DistilledSet, EvalContext
from ddbench.evaluators.regions import resolve_region_mode, training_regions
from ddbench.evaluators.relabel import RelabelEvaluator, RelabelOptions, kd_loss
from ddbench.tiles import expand, squeeze
from tests.conftest import make_dataset


def squeezed_set(num_classes=3, ipc=2, side=2, size=8):
    images = torch.rand(num_classes * ipc * side * side, 1, size, size)
    return DistilledSet(images=squeeze(images, side), labels=torch.arange(num_classes).repeat_interleave(ipc),
                        method="t", tile_grid=side)


def test_region_modes_respect_the_tile_layout():
    distilled = squeezed_set()
    assert resolve_region_mode("auto", 2) == "tiles" and resolve_region_mode("tile-crops", 1) == "whole"
    whole, labels = training_regions(distilled, "whole")
    assert whole.shape == (6, 1, 8, 8) and labels.tolist() == [0, 0, 1, 1, 2, 2]
    tiles, labels = training_regions(distilled, "tiles")
    assert tiles.shape == (24, 1, 8, 8) and labels.tolist() == [0] * 8 + [1] * 8 + [2] * 8
    torch.testing.assert_close(tiles, expand(distilled.images, 2))
    crops, labels = training_regions(distilled, "tile-crops")
    assert crops.shape == (24, 1, 4, 4) and len(labels) == 24


def test_kd_loss_is_zero_when_student_matches_teacher_and_positive_otherwise():
    logits = torch.randn(5, 4)
    teacher = torch.softmax(logits / 3.0, dim=1)
    assert kd_loss(logits, teacher, 3.0).abs() < 1e-6
    assert kd_loss(torch.randn(5, 4), teacher, 3.0) > 0


def test_options_are_checked():
    with pytest.raises(ValueError, match="mixing='blend'.*none, cutmix, mixup"):
        RelabelOptions(mixing="blend")
    with pytest.raises(ValueError, match="region_sampling"):
        RelabelOptions(region_sampling="corners")


def _context(dataset, options, budget_overrides=("epochs=3", "batch_size=8"), seed=0):
    arch = registry.get_architecture("convnet2")
    torch.manual_seed(1234)
    teacher = arch.build(dataset.channels, dataset.num_classes, dataset.image_size).eval()
    budget = resolve_budget("quick", list(budget_overrides))
    return EvalContext(dataset=dataset, verifier_arch=arch, teacher=teacher, budget=budget, seed=seed,
                       device=torch.device("cpu"), options=options)


@pytest.mark.parametrize("label_source", ["online", "stored"])
@pytest.mark.parametrize("mixing", ["none", "cutmix", "mixup"])
def test_relabel_trains_and_is_reproducible(label_source, mixing):
    dataset = make_dataset(size=8)
    distilled = squeezed_set(size=8)
    options = RelabelOptions(label_source=label_source, mixing=mixing, region_sampling="tile-crops")
    evaluator = RelabelEvaluator()
    first = evaluator.evaluate(distilled, _context(dataset, options))
    again = evaluator.evaluate(distilled, _context(dataset, options))
    assert 0 <= first.accuracy <= 100 and first.accuracy == again.accuracy


def test_progress_counts_steps_over_regions():
    dataset = make_dataset(size=8)
    distilled = squeezed_set(size=8)
    context = _context(dataset, RelabelOptions(region_sampling="tiles"))
    steps = []
    context.progress = steps.append
    evaluator = RelabelEvaluator()
    # an epoch is as many regions as the set has images (6 -> one step of 8 at most), whatever the layout
    assert evaluator.total_work(distilled, context) == 3
    evaluator.evaluate(distilled, context)
    assert sum(steps) == 3


def test_label_storage_is_reported_per_choice():
    dataset = make_dataset(size=8)
    distilled = squeezed_set(size=8)
    evaluator = RelabelEvaluator()
    online = evaluator.describe(distilled, _context(dataset, RelabelOptions()))
    stored = evaluator.describe(distilled, _context(dataset, RelabelOptions(label_source="stored")))
    assert stored["label_storage_bytes"] == 24 * 3 * 4  # 24 tile regions x 3 classes x float32
    teacher_bytes = online["label_storage"]["online_teacher"]
    assert online["label_storage_bytes"] == teacher_bytes > 0
    assert online["label_storage"]["hard"] == 6 * 8
    assert "regions=tiles" in online["labels"]


def test_validation_split_is_carved_from_train_and_never_the_test_set():
    dataset = make_dataset(num_classes=3, per_class=12)
    held = dataset.with_validation_split(4, seed=0)
    assert len(held.test) == 12 and len(held.train) == 24
    train_index, val_index = set(held.train.indices.tolist()), set(held.test.indices.tolist())
    assert not train_index & val_index and train_index | val_index == set(range(36))
    assert torch.bincount(held.test.labels).tolist() == [4, 4, 4]
    assert held.split_tag == "-minusval4" and "validation" in held.describe()["evaluated_on"]
    same = dataset.with_validation_split(4, seed=0)
    assert set(same.test.indices.tolist()) == val_index
    assert set(dataset.with_validation_split(4, seed=1).test.indices.tolist()) != val_index
    with pytest.raises(ValueError, match="leaves nothing to train on"):
        dataset.with_validation_split(12, seed=0)


def test_hard_label_evaluator_also_respects_tiles():
    from ddbench.evaluators.train import TrainEvaluator, TrainOptions

    dataset = make_dataset(size=8)
    distilled = squeezed_set(size=8)
    evaluator = TrainEvaluator()
    tiles = _context(dataset, TrainOptions())
    whole = _context(dataset, TrainOptions(region_sampling="whole"))
    assert evaluator.total_work(distilled, tiles) == evaluator.total_work(distilled, whole) == 3
    assert evaluator.describe(distilled, tiles)["region_sampling"] == "tiles"
    result = evaluator.evaluate(distilled, tiles)
    assert 0 <= result.accuracy <= 100
    with pytest.raises(ValueError, match="region_sampling"):
        TrainOptions(region_sampling="nope")


def test_sample_stream_sees_every_region_before_repeating():
    from ddbench.evaluators.training import SampleStream

    torch.manual_seed(0)
    stream = SampleStream(10, torch.device("cpu"))
    first = torch.cat([stream.take(3) for _ in range(3)] + [stream.take(1)])
    assert sorted(first.tolist()) == list(range(10))
    assert len(stream.take(25)) == 25
