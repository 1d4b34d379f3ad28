"""The observer recipe: random shift crops (``shift``), half-resolution views (``low_res``), their
defaults per dataset, the cache key, and the settings every command reads it from."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from ddbench.host.registry import get_architecture
from ddbench.observer import (ObserverRecipe, default_recipe, observer_for, random_low_res, random_shift_crops, run_recipe,
                              shift_padding, train_observer)
from ddbench.settings.observer_fields import recipe_overrides
from ddbench.store.io import read_metadata
from ddbench.tiles import as_tiles
from tests.conftest import make_dataset


def test_shift_crops_are_windows_of_the_padded_images_at_every_offset():
    images = torch.randn(64, 3, 6, 5)
    crops = random_shift_crops(images, 2, torch.Generator().manual_seed(0))
    padded = F.pad(images, (2, 2, 2, 2))
    seen = set()
    for index in range(len(images)):
        matches = [(top, left) for top in range(5) for left in range(5)
                   if torch.equal(crops[index], padded[index, :, top:top + 6, left:left + 5])]
        assert matches, f"crop {index} is no window of its padded image"
        seen.update(matches)
    assert len(seen) > 15  # offsets spread over the 25 possible, not one fixed shift
    assert torch.equal(crops, random_shift_crops(images, 2, torch.Generator().manual_seed(0)))


def test_shift_is_a_fraction_of_the_side_in_pixels():
    assert shift_padding(0.125, (3, 32, 32)) == 4  # CIFAR's pad-4 crops
    assert shift_padding(0.125, (1, 28, 28)) == 3
    assert shift_padding(0.125, (3, 64, 48)) == 6  # of the smaller side
    assert shift_padding(0.0, (3, 32, 32)) == 0


def test_shift_defaults_on_colour_images_and_keys_its_own_observer():
    for colour in ("imagefolder", "cifar10", "cifar100", "tiny-imagenet", "imagenet"):
        assert default_recipe(colour).shift == 0.125
    for grey in ("digits", "mnist", "fashion-mnist"):
        assert default_recipe(grey).shift == 0.0
    assert default_recipe("imagefolder", shift=0.0).shift == 0.0
    flips_only = run_recipe("imagefolder", torch.device("cpu"), shift=0.0)
    fields = dataclasses.asdict(flips_only)
    del fields["shift"], fields["low_res"]
    for name, default in (("precision", "fp32"), ("channels_last", False), ("compile", "off")):
        if fields[name] == default:  # left out of keys at their defaults, as before
            del fields[name]
    # flips only is keyed as before the field existed: its cached observers are found again
    assert flips_only.key() == hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]
    assert run_recipe("imagefolder", torch.device("cpu")).key() != flips_only.key()
    for bad in (-0.1, 0.5):
        with pytest.raises(ValueError, match=r"shift \(--observer-shift\) is a fraction"):
            ObserverRecipe(epochs=30, shift=bad)


def test_training_with_shift_crops_differs_from_training_without():
    dataset = make_dataset(num_classes=3, per_class=8, size=8)
    arch = get_architecture("convnet1")

    def weights(shift):
        model = train_observer(dataset, arch, ObserverRecipe(epochs=2, batch_size=8, shift=shift), 0, torch.device("cpu"))
        return dict(model.state_dict())

    plain, shifted, again = weights(0.0), weights(0.25), weights(0.25)
    assert any(not torch.equal(plain[k], shifted[k]) for k in plain)
    assert all(torch.equal(shifted[k], again[k]) for k in shifted)


def test_low_res_views_are_the_squeezed_tiles_of_a_seeded_share_of_the_batch():
    images = torch.randn(64, 3, 8, 8)
    assert torch.equal(random_low_res(images, 1.0, torch.Generator().manual_seed(0)), as_tiles(images, 2))
    assert torch.equal(random_low_res(images, 0.0, torch.Generator().manual_seed(0)), images)
    half = random_low_res(images, 0.5, torch.Generator().manual_seed(0))
    blurred = torch.tensor([torch.equal(a, b) for a, b in zip(half, as_tiles(images, 2))])
    assert 16 < int(blurred.sum()) < 48  # about half the images, and the rest untouched:
    assert torch.equal(half[~blurred], images[~blurred])
    assert torch.equal(half, random_low_res(images, 0.5, torch.Generator().manual_seed(0)))


def test_low_res_keys_its_own_observer_and_is_refused_outside_zero_to_one():
    plain = default_recipe("imagefolder")
    assert plain.low_res == 0.0 and default_recipe("imagefolder", low_res=None) == plain
    assert default_recipe("imagefolder", low_res=0.5).key() != plain.key()
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"low_res \(--observer-low-res\) is the share"):
            ObserverRecipe(epochs=30, low_res=bad)


def test_every_command_reads_the_observer_settings_into_one_recipe(tmp_path):
    """``observer_for`` takes its seed, recipe overrides, cache and checkpoint from any settings
    object (a RunConfig, the CLI's arguments, a bench spec): the observer it trains has them."""
    dataset = make_dataset(num_classes=3, per_class=8, size=8)
    arch = get_architecture("convnet1")
    settings = SimpleNamespace(observer_seed=3, observer_epochs=1, observer_shift=0.25, observer_low_res=0.5,
                               observer_checkpoint=None, cache_dir=str(tmp_path))
    assert recipe_overrides(settings) == {"epochs": 1, "shift": 0.25, "low_res": 0.5}
    trained = observer_for(settings, dataset, arch, torch.device("cpu"))
    assert trained.trained_now and trained.seed == 3 and trained.checkpoint.parent == tmp_path / "observers"
    assert (trained.recipe["epochs"], trained.recipe["shift"], trained.recipe["low_res"]) == (1, 0.25, 0.5)
    assert not observer_for(settings, dataset, arch, torch.device("cpu")).trained_now  # found in the cache
    settings.observer_checkpoint = str(trained.checkpoint)
    assert observer_for(settings, dataset, arch, torch.device("cpu")).checkpoint == trained.checkpoint
    settings.observer_checkpoint, settings.observer_low_res = str(tmp_path / "missing.safetensors"), None
    retrained = observer_for(settings, dataset, arch, torch.device("cpu"), use_checkpoint=False)  # another architecture's file
    assert retrained.trained_now and retrained.recipe["low_res"] == 0.0


def test_an_observer_records_the_device_and_cpu_threads_it_was_trained_with(tmp_path):
    """Training repeats bit for bit only on the same device with the same number of CPU threads,
    so the checkpoint says which: whoever retrains it can match them, and a cache hit reports them."""
    dataset = make_dataset(num_classes=3, per_class=8, size=8)
    arch = get_architecture("convnet1")
    settings = SimpleNamespace(observer_seed=0, observer_epochs=1, observer_shift=None, observer_low_res=None,
                               observer_checkpoint=None, cache_dir=str(tmp_path))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        trained = observer_for(settings, dataset, arch, torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    expected = {"device": "cpu", "torch": torch.__version__, "cpu_threads": 1}
    assert trained.trained_now and trained.trained_with == expected
    assert read_metadata(trained.checkpoint)["trained_with"] == expected
    cached = observer_for(settings, dataset, arch, torch.device("cpu"))  # now with this process's thread count
    assert not cached.trained_now and cached.describe()["trained_with"] == expected
