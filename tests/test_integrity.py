"""Numbers that cannot come from the wrong model or leak held-out images: every cache key and
artifact carries the identity of the exact training images (:mod:`ddbench.data.identity`).

Each test here failed on the code before the data identity existed (revision 29d62f8): the
observer cache ignored the validation seed and the data's content, observers given by path
and saved sets were not checked against the validation split, and cached evaluations did not
change with the observer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ddbench.data.identity import LeakError, check_unseen
from ddbench.observer import ObserverRecipe, get_observer, load_teacher
from ddbench.host.registry import get_architecture
from tests.conftest import make_dataset, run_cli

CPU = torch.device("cpu")
RECIPE = ObserverRecipe(epochs=1, batch_size=16)
FAST = ["--observer-epochs", "1", "--budget-set", "epochs=2", "--seeds", "1", "--quiet"]


def observer_for(dataset, cache: Path, **kwargs):
    return get_observer(dataset, get_architecture("convnet2"), CPU, recipe=RECIPE, cache=cache, **kwargs)


def test_the_observer_cache_tells_validation_seeds_apart(tmp_path):
    dataset = make_dataset(per_class=12)
    seed0, seed1 = dataset.with_validation_split(3, seed=0), dataset.with_validation_split(3, seed=1)
    first = observer_for(seed0, tmp_path)
    other = observer_for(seed1, tmp_path)
    assert first.trained_now and other.trained_now  # seed 1's held-out images were in seed 0's training split
    assert first.checkpoint != other.checkpoint
    assert first.data["held_out"] == {"per_class": 3, "seed": 0} and other.data["held_out"]["seed"] == 1
    again = observer_for(dataset.with_validation_split(3, seed=0), tmp_path)
    assert not again.trained_now and again.checkpoint == first.checkpoint


def two_folders_with_the_same_classes(root: Path):
    from torchvision.io import write_png

    from tests.test_datasets import make_imagefolder, solid

    make_imagefolder(root / "a")
    make_imagefolder(root / "b")
    for i in range(3):  # same class names and file names, other pixels
        write_png(solid(40, 50, (i * 80, 200, 10)), str(root / "b" / "train" / "cat" / f"cat_{i}.png"))


def test_two_image_folders_of_the_same_class_names_never_share_an_observer(tmp_path):
    from ddbench.contracts import DataOptions
    from ddbench.host.registry import get_dataset

    two_folders_with_the_same_classes(tmp_path)
    load = get_dataset("imagefolder").load
    a = load(DataOptions(root=str(tmp_path / "a"), image_size=8))
    b = load(DataOptions(root=str(tmp_path / "b"), image_size=8))
    assert a.class_names == b.class_names
    first = observer_for(a, tmp_path / "cache")
    second = observer_for(b, tmp_path / "cache")
    assert second.trained_now and second.checkpoint != first.checkpoint
    assert second.data["source"] != first.data["source"]
    # the same folder moved elsewhere is the same data; an edited file is not
    (tmp_path / "a").rename(tmp_path / "moved")
    moved = load(DataOptions(root=str(tmp_path / "moved"), image_size=8))
    assert moved.identity()["source"] == a.identity()["source"]


def test_a_validation_run_refuses_an_observer_or_teacher_that_saw_its_images(tmp_path):
    dataset = make_dataset(per_class=12)
    full = observer_for(dataset, tmp_path)
    seed0 = observer_for(dataset.with_validation_split(3, seed=0), tmp_path)
    seed1 = dataset.with_validation_split(3, seed=1)
    with pytest.raises(LeakError, match=r"saw \d+ of the 9 images of this run's validation split"):
        observer_for(seed1, tmp_path, checkpoint=seed0.checkpoint)
    with pytest.raises(LeakError, match="full training split, which contains every image"):
        observer_for(seed1, tmp_path, checkpoint=full.checkpoint)
    with pytest.raises(LeakError, match="full training split"):
        load_teacher(full.checkpoint, seed1, CPU)
    # held out by the observer too (a smaller split of the same seed is a subset): accepted
    fewer = observer_for(dataset.with_validation_split(2, seed=0), tmp_path, checkpoint=seed0.checkpoint)
    assert not fewer.trained_now
    # on the test split any observer may be used
    assert observer_for(dataset, tmp_path, checkpoint=seed0.checkpoint).checkpoint == seed0.checkpoint


def test_a_torch_state_dict_of_unknown_training_split_is_refused_on_validation(tmp_path):
    dataset = make_dataset(per_class=12)
    model = get_architecture("convnet2").build(1, 3, 8)
    torch.save(model.state_dict(), tmp_path / "observer.pt")
    with pytest.raises(LeakError, match="does not record which images it was trained on"):
        observer_for(dataset.with_validation_split(3, seed=0), tmp_path, checkpoint=tmp_path / "observer.pt")
    assert observer_for(dataset, tmp_path, checkpoint=tmp_path / "observer.pt").data is None  # test split: accepted


def test_a_set_records_its_split_and_is_checked_against_the_validation_split():
    dataset = make_dataset(per_class=12)
    held = dataset.with_validation_split(3, seed=0)
    check_unseen({k: v for k, v in held.identity().items()}, held, "set", "fix")  # made from this split: fine
    with pytest.raises(LeakError, match="may have seen"):
        check_unseen(None, held, "saved set x (another tool's layout)", "fix")
    with pytest.raises(LeakError, match="full training split"):
        check_unseen(dataset.identity(), held, "saved set x", "fix")
    check_unseen(None, dataset, "anything", "fix")  # the test split is never in a training split


@pytest.fixture(scope="module")
def saved_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("integrity")
    # the run's observer is trained by `observer train` first: the run must find it in the cache
    pretrained = run_cli("observer", "train", "--observer-epochs", "1", "--cache-dir", str(root / "cache"), "--quiet")
    assert pretrained.returncode == 0, pretrained.stderr
    made = run_cli("run", "--method", "squeeze", "--ipc", "2", "--cache-dir", str(root / "cache"), "--out",
                   str(root / "run"), *FAST)
    assert made.returncode == 0, made.stderr
    other = run_cli("observer", "train", "--observer-seed", "1", "--observer-epochs", "1", "--cache-dir",
                    str(root / "cache"), "--quiet")
    assert other.returncode == 0, other.stderr
    observers = sorted((root / "cache" / "observers").glob("*.safetensors"), key=lambda p: "seed1" in p.name)
    return root, next((root / "run" / "distilled").glob("squeeze-*.safetensors")), observers


def test_eval_refuses_a_set_distilled_with_the_validation_images_before_any_work(saved_set):
    root, path, _ = saved_set
    result = run_cli("eval", str(path), "--validation", "5", "--cache-dir", str(root / "cache"), "--out",
                     str(root / "leak"), *FAST)
    assert result.returncode == 2, result.stdout
    assert "full training split, which contains every image of this run's validation split" in result.stderr
    assert "drop --validation" in result.stderr and not (root / "leak").exists()


def test_cached_evaluations_are_redone_when_the_observer_changes(saved_set):
    root, path, (observer_a, observer_b) = saved_set
    out = root / "eval"
    records = []
    for observer in (observer_a, observer_b, observer_a):
        result = run_cli("eval", str(path), "--observer", str(observer), "--out", str(out), *FAST)
        assert result.returncode == 0, result.stderr
        results = json.loads((out / "results.json").read_text())
        assert results["observer"]["checkpoint"] == str(observer)
        units = json.loads((out / "manifest.json").read_text())["units"]
        records.append((len(units), results["methods"][path.stem]["accuracy"]))
    assert [count for count, _ in records] == [1, 2, 2]  # B evaluated anew; A's result reused the third time
    assert records[2][1] == records[0][1]


def test_observer_train_fills_the_cache_entry_that_run_reads(saved_set):
    """``ddbench observer train`` and ``ddbench run`` key the observer with the same recipe (the
    budget's precision and memory format as resolved on the device), so the observer the
    fixture pre-trained is found by its run, not trained again."""
    root, _, (observer_a, _) = saved_set
    observer = json.loads((root / "run" / "results.json").read_text())["observer"]
    assert observer["trained_now"] is False, observer
    assert Path(observer["checkpoint"]).name == observer_a.name
