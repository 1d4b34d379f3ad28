"""benchmarks/observer_views.py: an observer's accuracy on whole images, on the expanded tiles a
squeeze shows it and on a saved set's tiles, found or trained from the same observer flags as
``ddbench run``."""

from __future__ import annotations

import torch
from torch import nn

from ddbench.contracts import DistilledSet
from ddbench.runtime.metrics import accuracy
from ddbench.tiles import as_tiles, expand
from tests.conftest import load_benchmark, make_dataset

def load_views():
    return load_benchmark("observer_views")


def test_each_side_scores_the_images_as_tiles_of_that_grid():
    views = load_views()
    dataset = make_dataset(num_classes=3, per_class=4, size=8, test_per_class=20)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    scores = views.view_accuracies(model, dataset, torch.device("cpu"), [1, 2], batch_size=7)
    assert scores[1] == accuracy(model, dataset.test, torch.device("cpu"))
    images, labels = dataset.test.pixels, dataset.test.labels
    with torch.no_grad():
        by_hand = 100.0 * (model(as_tiles((images - 0.5) / 0.25, 2)).argmax(1) == labels).float().mean().item()
    assert abs(scores[2] - by_hand) < 1e-4


def test_the_script_finds_the_observer_of_the_given_recipe(tmp_path, capsys):
    views = load_views()
    flags = ["--observer-epochs", "1", "--cache-dir", str(tmp_path), "--validation", "5", "--device", "cpu"]
    assert views.main(flags + ["--observer-low-res", "0.5", "--sides", "1,2"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "started (" in captured.out + captured.err  # the observer's training reports its progress
    assert "low_res 0.5" in out and "validation (5 per class" in out
    assert "| whole image |" in out and "| one tile of 2 x 2, expanded |" in out
    assert len(list((tmp_path / "observers").glob("digits-minusval5s0-*.safetensors"))) == 1
    views.main(flags + ["--sides", "1"])  # the default recipe: another observer
    assert len(list((tmp_path / "observers").glob("digits-minusval5s0-*.safetensors"))) == 2


def test_a_saved_set_is_scored_on_each_expanded_tile_against_its_images_class():
    views = load_views()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    images, labels = torch.randn(5, 1, 8, 8), torch.tensor([0, 1, 2, 1, 0])
    squeezed = DistilledSet(images=images, labels=labels, method="lic", tile_grid=2)
    top1, probability = views.set_scores(model, squeezed, torch.device("cpu"), batch_size=3)
    with torch.no_grad():
        logits = model(expand(images, 2))  # 20 tiles, four per image, each of its image's class
    classes = labels.repeat_interleave(4)
    assert top1 == 100.0 * (logits.argmax(1) == classes).sum().item() / 20
    assert abs(probability - 100.0 * logits.softmax(1)[torch.arange(20), classes].mean().item()) < 1e-4
    whole = DistilledSet(images=images, labels=labels, method="random")
    assert views.set_scores(model, whole, torch.device("cpu"))[0] == 100.0 * (model(images).argmax(1) == labels).sum().item() / 5


def test_a_recipe_setting_out_of_range_is_one_line_naming_the_flag_before_any_work(tmp_path):
    views = load_views()
    try:
        views.main(["--observer-low-res", "1.5", "--cache-dir", str(tmp_path), "--device", "cpu"])
    except SystemExit as stop:
        message = str(stop.code)
    else:
        raise AssertionError("an out-of-range --observer-low-res was accepted")
    assert "--observer-low-res" in message and "got 1.5" in message
    assert not (tmp_path / "observers").exists()  # nothing trained, nothing cached
