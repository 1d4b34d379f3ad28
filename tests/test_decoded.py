"""Image files are decoded once: a training loop's second epoch decodes nothing, worker
processes decode ahead, and a later run memory-maps the saved pixels instead of decoding."""

from __future__ import annotations

import torch

from ddbench.contracts import DataOptions
from ddbench.data.imagefolder import ImageFolderSource
from ddbench.observer import ObserverRecipe, train_observer
from ddbench.host.registry import get_architecture, get_dataset
from tests.test_datasets import make_imagefolder


def counting(monkeypatch) -> list[str]:
    calls: list[str] = []
    original = ImageFolderSource.decode_file

    def decode_file(self, path):
        calls.append(path)
        return original(self, path)

    monkeypatch.setattr(ImageFolderSource, "decode_file", decode_file)
    return calls


def load(root, **options):
    return get_dataset("imagefolder").load(DataOptions(root=str(root), image_size=16, workers=0, **options))


def test_observer_training_decodes_each_image_once(tmp_path, monkeypatch):
    make_imagefolder(tmp_path / "data")
    calls = counting(monkeypatch)
    dataset = load(tmp_path / "data")
    train_observer(dataset, get_architecture("convnet1"), ObserverRecipe(epochs=3, batch_size=2), 0, torch.device("cpu"))
    assert sorted(calls) == sorted(dataset.train.paths)  # 3 epochs, every image decoded exactly once


def test_decoded_pixels_equal_decoding_each_time_and_a_later_run_decodes_nothing(tmp_path, monkeypatch):
    make_imagefolder(tmp_path / "data")
    streamed = load(tmp_path / "data", memory_budget_gib=0.0)  # over the budget: decoded at every load
    calls = counting(monkeypatch)
    everything = torch.arange(len(streamed.train))
    first, again = streamed.train.load(everything), streamed.train.load(everything)
    assert len(calls) == 2 * len(streamed.train) and torch.equal(first, again)
    calls.clear()
    cached = load(tmp_path / "data", cache_dir=str(tmp_path / "cache"))
    cached.train.fill()  # decode ahead, then save for later runs
    assert len(calls) == len(cached.train) and torch.equal(cached.train.load(everything), first)
    assert list((tmp_path / "cache" / "decoded").glob("*-16px.u8"))
    calls.clear()
    later = load(tmp_path / "data", cache_dir=str(tmp_path / "cache"))
    assert torch.equal(later.train.load(everything), first) and calls == []  # memory-mapped, nothing decoded


def test_an_edited_file_is_decoded_again(tmp_path, monkeypatch):
    from torchvision.io import write_png

    from tests.test_datasets import solid

    make_imagefolder(tmp_path / "data")
    load(tmp_path / "data", cache_dir=str(tmp_path / "cache")).train.fill()
    write_png(solid(40, 50, (1, 2, 3)), str(tmp_path / "data" / "train" / "cat" / "cat_0.png"))
    calls = counting(monkeypatch)
    edited = load(tmp_path / "data", cache_dir=str(tmp_path / "cache"))
    index = edited.train.paths.index(str(tmp_path / "data" / "train" / "cat" / "cat_0.png"))
    pixels = edited.train.load(torch.tensor([index]))
    assert len(calls) == 1  # another digest: the saved pixels of the old file are not used
    assert pixels.std(dim=(2, 3)).max() < 1e-6 and pixels.mean() < 0  # the new, nearly black, flat image


def test_a_streamed_split_is_decoded_in_worker_processes_and_read_in_order(tmp_path, monkeypatch):
    from ddbench.data.batches import BatchReader

    make_imagefolder(tmp_path / "data")
    reference = load(tmp_path / "data").train
    expected = reference.load(torch.arange(len(reference)))
    streamed = get_dataset("imagefolder").load(
        DataOptions(root=str(tmp_path / "data"), image_size=16, workers=2, memory_budget_gib=0.0))
    assert streamed.train.streamed and not reference.streamed
    assert BatchReader(reference, torch.device("cpu")).workers == 0  # held in memory: sliced in this process
    calls = counting(monkeypatch)  # decodes in this process; the workers count in their own copies
    reader = BatchReader(streamed.train, torch.device("cpu"))
    assert reader.workers == 2
    order = torch.randperm(len(streamed.train), generator=torch.Generator().manual_seed(0))
    for _ in range(2):  # two epochs through the same persistent workers
        seen = list(reader(order, 3))
        assert torch.equal(torch.cat([batch for batch, _ in seen]), order)
        assert all(torch.equal(images, expected[batch]) for batch, images in seen)
    assert calls == []  # the main process decoded nothing


def test_decode_ahead_reports_a_stage_only_when_there_is_something_to_decode(tmp_path):
    from ddbench.runner import decode_ahead

    make_imagefolder(tmp_path / "data")
    stages = []

    class UI:
        def progress(self, description, total):
            stages.append((description, total))
            return lambda n: None

    first = load(tmp_path / "data", cache_dir=str(tmp_path / "cache"))
    decode_ahead(first, UI())
    assert stages == [("decode imagefolder training images", len(first.train))]
    decode_ahead(load(tmp_path / "data", cache_dir=str(tmp_path / "cache")), UI())  # memory-mapped: nothing to do
    decode_ahead(load(tmp_path / "data", memory_budget_gib=0.0), UI())  # streamed: decoded by the loops' workers
    assert len(stages) == 1


def copy_with_new_times(source, target) -> None:
    """A copy whose files all carry new modification times (as a staging copy to scratch has)."""
    import os
    import shutil

    shutil.copytree(source, target, copy_function=shutil.copyfile)
    for path in target.rglob("*.png"):
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**12))


def test_a_copied_folder_keeps_its_identity_and_its_decoded_pixels(tmp_path, monkeypatch):
    make_imagefolder(tmp_path / "data")
    first = load(tmp_path / "data", cache_dir=str(tmp_path / "cache"))
    first.train.fill()
    copy_with_new_times(tmp_path / "data", tmp_path / "copy")
    calls = counting(monkeypatch)
    copy = load(tmp_path / "copy", cache_dir=str(tmp_path / "cache"))
    assert copy.identity() == first.identity()
    copy.train.load(torch.arange(len(copy.train)))
    assert calls == []  # the pixels saved from the first copy are found again
    uncached = load(tmp_path / "copy")  # no cache folder: read and hashed, the same digest
    assert uncached.identity() == first.identity()


def test_a_changed_byte_changes_the_identity_even_at_the_same_size(tmp_path):
    make_imagefolder(tmp_path / "data")
    copy_with_new_times(tmp_path / "data", tmp_path / "copy")
    path = tmp_path / "copy" / "train" / "cat" / "cat_1.png"
    data = bytearray(path.read_bytes())
    data[-13] ^= 0xFF  # inside the last chunk's CRC: the same size, other bytes
    path.write_bytes(bytes(data))
    assert load(tmp_path / "copy").identity()["source"] != load(tmp_path / "data").identity()["source"]
    assert load(tmp_path / "copy").identity()["evaluation"] == load(tmp_path / "data").identity()["evaluation"]


def test_the_files_are_hashed_once_per_copy_as_a_reported_stage(tmp_path):
    from ddbench.pipeline.preflight import fingerprint_ahead

    make_imagefolder(tmp_path / "data")
    stages = []

    class UI:
        def progress(self, description, total):
            stages.append([description, total, 0])
            return lambda n: stages[-1].__setitem__(2, stages[-1][2] + n)

    first = load(tmp_path / "data", cache_dir=str(tmp_path / "cache"))
    fingerprint_ahead(first, UI())
    assert stages == [["hash imagefolder training files", 6, 6], ["hash imagefolder test files", 4, 4]]
    again = load(tmp_path / "data", cache_dir=str(tmp_path / "cache"))
    assert again.train.fingerprint_pending() == 0
    fingerprint_ahead(again, UI())  # remembered: nothing read, no stage
    assert len(stages) == 2 and again.identity() == first.identity()
    copy_with_new_times(tmp_path / "data", tmp_path / "copy")
    assert load(tmp_path / "copy", cache_dir=str(tmp_path / "cache")).train.fingerprint_pending() == 6


def test_one_source_lists_its_files_once_and_reads_them_once(tmp_path, monkeypatch):
    import os

    import ddbench.data.imagefolder as imagefolder
    from ddbench.data.identity import source_digest

    make_imagefolder(tmp_path / "data")
    train = load(tmp_path / "data", cache_dir=str(tmp_path / "cache")).train
    stats, reads = [], []
    real_stat, real_open = os.stat, open
    monkeypatch.setattr(imagefolder.os, "stat", lambda path, *a, **k: (stats.append(path) if str(path) in train.paths
                                                                          else None) or real_stat(path, *a, **k))
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: (reads.append(path) if str(path) in train.paths else None)
                        or real_open(path, *a, **k))
    assert train.fingerprint_pending() == 6
    told = []
    digest = source_digest(train, told.append)
    assert train.fingerprint_pending() == 0 and source_digest(train) == digest == train.fingerprint()
    assert sorted(stats) == sorted(train.paths), "each file is stat'ed once, for pending and fingerprint together"
    assert sorted(reads) == sorted(train.paths) and told == [1] * 6
