"""Nothing from disk runs code: a crafted checkpoint whose unpickling would execute a call is
refused before it runs; plain state dicts in ``.pt`` files load with ``weights_only=True``."""

from __future__ import annotations

import os

import pytest
import torch

from ddbench.store.io import ArtifactError, load_torch_file
from ddbench.observer_files import load_observer_checkpoint
from ddbench.host.registry import get_architecture
from tests.conftest import run_cli


class Payload:
    """Unpickling this calls ``os.mkdir(marker)``: the kind of file a stranger could send."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture
def crafted(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "observer.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "extra": Payload(marker)}, path)
    return path, marker


def test_a_crafted_checkpoint_is_refused_without_running_its_code(crafted):
    path, marker = crafted
    with pytest.raises(ArtifactError, match=r"observer\.pt: refused"):
        load_torch_file(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the file really is hostile: a full unpickle runs the call
    assert marker.exists()


def test_the_cli_refuses_it_as_an_observer_and_names_it(crafted, tmp_path):
    path, marker = crafted
    result = run_cli("run", "--method", "random", "--observer", str(path), "--out", str(tmp_path / "out"), "--quiet")
    assert result.returncode == 2
    assert str(path) in result.stderr and "refused" in result.stderr
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_plain_state_dict_loads_and_is_measured(tmp_path, digits):
    arch = get_architecture("convnet3-bn")
    torch.manual_seed(0)
    model = arch.build(digits.channels, digits.num_classes, digits.image_size)
    path = tmp_path / "observer.pth"
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()},
                "class_names": list(digits.class_names)}, path)
    loaded, meta = load_observer_checkpoint(path, digits, arch, torch.device("cpu"))
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    assert 0 <= meta["test_accuracy"] <= 100 and meta["format"] == "torch-state-dict"


def test_a_state_dict_of_another_shape_or_class_map_names_the_file(tmp_path, digits):
    arch = get_architecture("convnet3-bn")
    other = arch.build(digits.channels, 5, digits.image_size)
    path = tmp_path / "five-classes.pt"
    torch.save(other.state_dict(), path)
    with pytest.raises(ArtifactError, match=r"five-classes\.pt: its weights do not fit .* --arch"):
        load_observer_checkpoint(path, digits, arch, torch.device("cpu"))
    wrong_map = tmp_path / "wrong-map.pt"
    torch.save({"state_dict": arch.build(digits.channels, 10, digits.image_size).state_dict(),
                "class_names": [f"c{i}" for i in range(10)]}, wrong_map)
    with pytest.raises(ValueError, match=r"wrong-map\.pt does not fit this run: its class map"):
        load_observer_checkpoint(wrong_map, digits, arch, torch.device("cpu"))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01 not a torch file")
    with pytest.raises(ArtifactError, match=r"garbage\.pt: not a readable torch file"):
        load_torch_file(garbage)
