"""benchmarks/observer_views.py: an observer's accuracy on whole images and on the expanded tiles
a squeeze shows it, found or trained from the same observer flags as ``ddbench run``."""

from __future__ import annotations

import torch
from torch import nn

from ddbench.runtime.metrics import accuracy
from ddbench.tiles import as_tiles
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
    out = capsys.readouterr().out
    assert "low_res 0.5" in out and "validation (5 per class" in out
    assert "| whole image |" in out and "| one tile of 2 x 2, expanded |" in out
    assert len(list((tmp_path / "observers").glob("digits-minusval5s0-*.safetensors"))) == 1
    views.main(flags + ["--sides", "1"])  # the default recipe: another observer
    assert len(list((tmp_path / "observers").glob("digits-minusval5s0-*.safetensors"))) == 2
