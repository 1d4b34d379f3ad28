"""Files and folders ddbench writes follow the user's umask (0666 / 0777 without it), so shared
caches, run folders and exported sets are readable by collaborators where the umask allows."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from ddbench.store.io import atomic_write_json, save_tensors
from ddbench.store.io import write_folder


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    previous = os.umask(0o022)
    yield set_mask
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_written_files_and_folders_follow_the_umask(tmp_path, umask, mask):
    umask(mask)
    atomic_write_json(tmp_path / "results.json", {"a": 1})
    save_tensors(tmp_path / "set.safetensors", {"x": torch.zeros(2)}, {"format": "test"})
    folder = write_folder(tmp_path / "exported", lambda tmp: (tmp / "0.png").write_bytes(b"png"))
    assert mode(tmp_path / "results.json") == 0o666 & ~mask
    assert mode(tmp_path / "set.safetensors") == 0o666 & ~mask
    assert mode(folder) == 0o777 & ~mask
    assert mode(folder / "0.png") == 0o666 & ~mask  # as open() makes it
