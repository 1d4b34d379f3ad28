"""Atomic file writes (temporary file + rename) and pickle-free tensor files."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def current_umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """What ``open()`` would give a new file: 0666 without the umask (mkstemp gives 0600)."""
    return 0o666 & ~current_umask()


def folder_mode() -> int:
    """What ``mkdir`` would give a new folder: 0777 without the umask (mkdtemp gives 0700)."""
    return 0o777 & ~current_umask()


def _atomic_write(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())  # shared caches and run folders stay readable as the umask allows
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def save_tensors(path: Path, tensors: dict[str, Any], metadata: dict[str, Any]) -> None:
    """Tensors to a safetensors file with ``metadata`` (JSON) in its header, atomically."""
    from safetensors.torch import save

    contiguous = {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
    data = save(contiguous, metadata={"ddbench": json.dumps(metadata, default=_json_default)})
    atomic_write_bytes(path, data)


class ArtifactError(ValueError):
    """A file on disk that cannot be read as what it claims to be."""


def _read_safetensors(path: Path, with_tensors: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {name: handle.get_tensor(name) for name in handle.keys()} if with_tensors else {}
            header = handle.metadata() or {}
    except Exception as exc:
        raise ArtifactError(f"{path}: not a readable safetensors file ({exc})") from exc
    try:
        metadata = json.loads(header.get("ddbench", "{}"))
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: the ddbench metadata in its header is not valid JSON ({exc})") from exc
    return tensors, metadata


def load_tensors(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Tensors and ddbench metadata from a safetensors file; no code is executed."""
    return _read_safetensors(path, with_tensors=True)


def read_metadata(path: Path) -> dict[str, Any]:
    """Only the ddbench metadata of a safetensors file (its header; no tensor is read)."""
    return _read_safetensors(path, with_tensors=False)[1]


TORCH_SUFFIXES = (".pt", ".pth")


def load_torch_file(path: Path) -> Any:
    """A ``torch.save`` file read with ``weights_only=True``: tensors, numbers, strings, lists
    and dicts only. A file whose unpickling would build anything else (and so could run code)
    is refused before any of it runs, with an ``ArtifactError`` naming the file."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _unpickling_reason(str(exc))
        if "GLOBAL" in reason:  # it names a callable or class to build: the way pickles run code
            raise ArtifactError(f"{path}: refused: it holds objects other than tensors and plain data, and "
                                f"unpickling them could run code ({reason}); save a state_dict of tensors, or "
                                f"convert it to safetensors") from None
        raise ArtifactError(f"{path}: not a readable torch file ({reason})") from None
    except Exception as exc:
        raise ArtifactError(f"{path}: not a readable torch file ({type(exc).__name__}: {exc})") from None


def _unpickling_reason(message: str) -> str:
    """The specific line of torch's weights-only error (not its advice to turn the check off)."""
    boilerplate = ("Weights only load failed", "Check the documentation", "Please file an issue")
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    specific = [line for line in lines if not line.startswith(boilerplate)]
    tail = [line.split("WeightsUnpickler error:")[-1].strip() for line in lines if "WeightsUnpickler error:" in line]
    return "; ".join(part for part in [*tail, *specific] if part) or (lines[0] if lines else "unpickling failed")


def write_folder(target: Path, write) -> Path:
    """``write(tmp)`` fills a temporary folder next to ``target``, then it is renamed to ``target``."""
    target = Path(target)
    if target.exists():
        raise ArtifactError(f"{target} exists; pick another --out or remove it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        os.chmod(tmp, folder_mode())  # mkdtemp's 0700 would hide an exported set from collaborators
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
