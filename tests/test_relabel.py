"""The relabel evaluator: region sampling over tile layouts, the KD loss, stored vs online
labels, label storage accounting, and the validation split."""

from __future__ import annotations

import pytest
import torch

from ddbench.host import registry
from ddbench.settings.budget import resolve_budget
from ddbench.contracts import DistilledSet, EvalContext
from ddbench.evaluators.regions import RegionSampler, _expanded_by_weights, resolve_region_mode, tile_at
from ddbench.evaluators.relabel import RelabelEvaluator, RelabelOptions, distillation_loss, kd_loss
from ddbench.tiles import cut_tiles, enlarge, expand, squeeze
from tests.conftest import make_dataset


def squeezed_set(num_classes=3, ipc=2, side=2, size=8):
    images = torch.rand(num_classes * ipc * side * side, 1, size, size)
    return DistilledSet(images=squeeze(images, side), labels=torch.arange(num_classes).repeat_interleave(ipc),
                        method="t", tile_grid=side)


def assert_each_is_one_of_its_tiles(batch, images, side):
    """Every sample ``batch[i]`` is one of image ``images[i]``'s tiles, expanded (``expand``)."""
    cells, per_image = expand(images, side), side * side
    for i in range(len(batch)):
        assert any(torch.allclose(batch[i], cells[per_image * i + t]) for t in range(per_image))


def sample(distilled, mode, indices=None, **kwargs):
    sampler = RegionSampler(distilled, mode, torch.device("cpu"), **kwargs)
    indices = torch.arange(sampler.num_samples) if indices is None else indices
    return sampler.gather(indices), sampler.labels_of(indices)


def test_region_modes_respect_the_tile_layout():
    distilled = squeezed_set()
    assert resolve_region_mode("auto", 2) == "tiles" and resolve_region_mode("tile-crops", 1) == "whole"
    whole, labels = sample(distilled, "whole")
    assert whole.shape == (6, 1, 8, 8) and labels.tolist() == [0, 0, 1, 1, 2, 2]
    tiles, labels = sample(distilled, "tiles")
    assert tiles.shape == (24, 1, 8, 8) and labels.tolist() == [0] * 8 + [1] * 8 + [2] * 8
    torch.testing.assert_close(tiles, expand(distilled.images, 2))  # the paper's expand operator, per batch
    crops, labels = sample(distilled, "tile-crops")
    assert crops.shape == (24, 1, 4, 4) and len(labels) == 24
    torch.testing.assert_close(crops, cut_tiles(distilled.images, 2))


def test_tiles_of_an_uneven_grid_are_expanded_as_expand_does():
    distilled = squeezed_set(side=3, size=32)  # cells of 10, 11 and 11 px
    picked = torch.tensor([50, 4, 4, 0, 17, 53])
    tiles, labels = sample(distilled, "tiles", picked)
    torch.testing.assert_close(tiles, expand(distilled.images, 3)[picked])
    assert labels.tolist() == distilled.labels.repeat_interleave(9)[picked].tolist()
    zoomed, _ = sample(distilled, "factor-crop", torch.arange(6), factor_fraction=1.0)
    assert_each_is_one_of_its_tiles(zoomed, distilled.images, 3)
    with pytest.raises(ValueError, match="tile-crops needs tiles of one size.*region_sampling=tiles"):
        sample(distilled, "tile-crops")
    # factor crops of whole images on a grid that does not divide them reach every pixel
    plain = DistilledSet(images=torch.rand(4, 1, 32, 32), labels=torch.arange(4), method="t")
    zoomed, _ = sample(plain, "factor-crop", factor_fraction=1.0, crop_factor=3)
    assert_each_is_one_of_its_tiles(zoomed, plain.images, 3)


def test_the_weighted_path_is_the_one_resize_path_on_an_even_grid():
    images, tile = torch.rand(5, 2, 12, 18), torch.tensor([0, 8, 4, 3, 5])
    torch.testing.assert_close(_expanded_by_weights(images, tile, 3), enlarge(tile_at(images, tile, 3), 12, 18))
    images, tile = torch.rand(3, 1, 8, 8), torch.tensor([3, 0, 1])  # 4 px cells enlarged twice
    torch.testing.assert_close(_expanded_by_weights(images, tile, 2), enlarge(tile_at(images, tile, 2), 8, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the evaluator gathers inside its autocast
        under_autocast = _expanded_by_weights(images, tile, 2)
    assert under_autocast.dtype == torch.float32  # not rounded to bfloat16 by the products
    torch.testing.assert_close(under_autocast, enlarge(tile_at(images, tile, 2), 8, 8))


def test_a_batch_of_tiles_is_expanded_alone_in_any_order():
    distilled = squeezed_set(ipc=3)
    picked = torch.tensor([17, 3, 3, 35, 0])
    tiles, labels = sample(distilled, "tiles", picked)
    torch.testing.assert_close(tiles, expand(distilled.images, 2)[picked])
    assert labels.tolist() == distilled.labels.repeat_interleave(4)[picked].tolist()


def test_factor_crop_mixes_whole_batches_and_expanded_tile_batches():
    distilled = squeezed_set()
    whole_images = distilled.images
    picked = torch.arange(6)
    torch.manual_seed(0)
    kinds = set()
    for _ in range(40):
        batch, labels = sample(distilled, "factor-crop", picked, factor_fraction=0.5)
        assert batch.shape == (6, 1, 8, 8) and labels.tolist() == [0, 0, 1, 1, 2, 2]
        if torch.equal(batch, whole_images):
            kinds.add("whole")
        else:  # every image replaced by one of its own tiles, expanded
            assert_each_is_one_of_its_tiles(batch, whole_images, 2)
            kinds.add("tiles")
    assert kinds == {"whole", "tiles"}
    only_whole, _ = sample(distilled, "factor-crop", picked, factor_fraction=0.0)
    assert torch.equal(only_whole, whole_images)
    # an unsqueezed set: tiles of a crop_factor x crop_factor grid of the whole image
    plain = DistilledSet(images=torch.rand(4, 1, 9, 9), labels=torch.arange(4), method="t")
    zoomed, _ = sample(plain, "factor-crop", factor_fraction=1.0, crop_factor=3)
    assert_each_is_one_of_its_tiles(zoomed, plain.images, 3)


def test_mse_logits_loss_is_the_mean_squared_logit_error():
    student, teacher = torch.randn(5, 4), torch.randn(5, 4)
    options = RelabelOptions(loss="mse-logits")
    assert torch.allclose(distillation_loss(student, teacher, options), ((student - teacher) ** 2).mean())
    assert distillation_loss(teacher, teacher, options) == 0


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
    bad = {"loss": ("l1", "loss='l1': use one of kl, mse-logits"),
           "factor_fraction": (1.5, "factor_fraction=1.5: use a share between 0 and 1"),
           "crop_factor": (1, "crop_factor=1: use a grid side from 2 to 8"),
           "temperature": (float("inf"), "temperature must be a positive finite number"),
           "mix_alpha": (0.0, "mix_alpha must be a positive finite number")}
    for key, (value, message) in bad.items():
        with pytest.raises(ValueError, match=message):
            RelabelOptions(**{key: value})
    with pytest.raises(ValueError, match="loss=mse-logits needs the teacher's logits"):
        RelabelOptions(loss="mse-logits", label_source="set")
    with pytest.raises(ValueError, match="factor-crop .* use label_source=online"):
        RelabelOptions(region_sampling="factor-crop", label_source="stored")


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


@pytest.mark.parametrize("loss", ["kl", "mse-logits"])
@pytest.mark.parametrize("regions", ["tiles", "factor-crop", "whole"])
def test_losses_and_region_modes_train_reproducibly(loss, regions):
    dataset = make_dataset(size=8)
    distilled = squeezed_set(size=8)
    options = RelabelOptions(loss=loss, region_sampling=regions)
    evaluator = RelabelEvaluator()
    first = evaluator.evaluate(distilled, _context(dataset, options))
    assert first.accuracy == evaluator.evaluate(distilled, _context(dataset, options)).accuracy
    label = evaluator.describe(distilled, _context(dataset, options))["labels"]
    assert ("mse-logits" in label) == (loss == "mse-logits") and f"regions={regions}" in label


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
    assert held.split_tag == "-minusval4s0" and "validation" in held.describe()["evaluated_on"]
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
