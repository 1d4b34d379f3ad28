"""Run artifacts: distilled sets on disk and the run folder's manifest of finished work.

A distilled set is one safetensors file (format ``ddbench-distilled/1``): tensors ``images``
(float32 [K, C, H, W], normalised), ``labels`` (int64 [K]) and optionally ``soft_labels``
(float32 [K, classes]); its header holds JSON metadata (method, options, observer identity
and class map, seed, versions, timings, peak memory, tile layout, extras). Nothing is
unpickled when it is read, and it loads back bit-identically.

The manifest (``manifest.json``) records each finished unit of work (a method's
distillation, one evaluation seed) under a key derived from everything that determines its
result, so a run started again with the same command skips what finished, and a run that
adds a method to a finished comparison only does the new work.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import torch

from ddbench.contracts import DistilledSet
from ddbench.store.io import ArtifactError, atomic_write_json, load_tensors, save_tensors

DISTILLED_FORMAT = "ddbench-distilled/1"
MANIFEST_FORMAT = "ddbench-manifest/1"


def to_jsonable(value: Any, where: str) -> Any:
    """Plain JSON values from what plugins put in options and extras (tensors become lists)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, where) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, where) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise ArtifactError(f"{where}: cannot store a {type(value).__name__} in JSON metadata")


def save_distilled(path: Path, distilled: DistilledSet, context: dict[str, Any]) -> None:
    """Write a distilled set atomically; ``context`` adds run facts (observer, dataset, seed...)."""
    tensors = {"images": distilled.images.float(), "labels": distilled.labels.long()}
    if distilled.stored_soft_labels is not None:
        tensors["soft_labels"] = distilled.stored_soft_labels.float()
    metadata = {
        "format": DISTILLED_FORMAT,
        "method": distilled.method,
        "soft_labels": distilled.soft_labels,
        "tile_grid": distilled.tile_grid,
        "options": to_jsonable(distilled.options, f"method {distilled.method!r} options"),
        "timings": to_jsonable(distilled.timings, "timings"),
        "peak_memory_bytes": distilled.peak_memory_bytes,
        "extras": to_jsonable(distilled.extras, f"method {distilled.method!r} extras"),
        **to_jsonable(context, "run context"),
    }
    save_tensors(path, tensors, metadata)


def load_distilled(path: Path) -> tuple[DistilledSet, dict[str, Any]]:
    """A distilled set and its metadata, checked to be of the ddbench format."""
    tensors, meta = load_tensors(path)
    if meta.get("format") != DISTILLED_FORMAT:
        raise ArtifactError(f"{path}: not a ddbench distilled set (format {meta.get('format')!r}, expected {DISTILLED_FORMAT!r})")
    missing = {"images", "labels"} - set(tensors)
    if missing:
        raise ArtifactError(f"{path}: missing tensor(s) {', '.join(sorted(missing))}")
    distilled = DistilledSet(
        images=tensors["images"], labels=tensors["labels"], method=meta["method"], soft_labels=meta["soft_labels"],
        stored_soft_labels=tensors.get("soft_labels"), tile_grid=int(meta["tile_grid"]), options=meta.get("options", {}),
        timings=meta.get("timings", {}), peak_memory_bytes=int(meta.get("peak_memory_bytes", 0)), extras=meta.get("extras", {}),
    )
    return distilled, meta


def unit_key(kind: str, description: dict[str, Any]) -> str:
    """A stable key for a unit of work from everything that determines its result."""
    blob = json.dumps({"kind": kind, **description}, sort_keys=True, default=str).encode()
    return f"{kind}-{hashlib.sha256(blob).hexdigest()[:16]}"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_revision(where: Path) -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


class RunStore:
    """The run folder: ``manifest.json`` with the finished units.

    Every change is a read-modify-write under an exclusive lock (``fcntl.flock`` on
    ``.manifest.lock`` in the folder) and an atomic replace: the file on disk is re-read, this
    process's record merged in and written back, so two commands sharing one ``--out`` (or
    torchrun ranks) never drop each other's records."""

    def __init__(self, folder: Path, writer: bool = True):
        """``writer=False`` (ranks other than 0 under torchrun): records are kept in memory only."""
        self.folder = Path(folder)
        self.writer = writer
        self.path = self.folder / "manifest.json"
        self.lock_path = self.folder / ".manifest.lock"
        self.manifest: dict[str, Any] = self._read() or {"format": MANIFEST_FORMAT, "runs": [], "units": {}}

    def _read(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            loaded = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{self.path}: unreadable manifest ({exc}); move the folder away or pick another --out") from exc
        if not isinstance(loaded, dict) or loaded.get("format") != MANIFEST_FORMAT:
            found = loaded.get("format") if isinstance(loaded, dict) else type(loaded).__name__
            raise ArtifactError(f"{self.path}: not a ddbench manifest (format {found!r}); move the folder away or pick "
                                f"another --out")
        return loaded

    def _update(self, change) -> None:
        """Apply ``change(manifest)`` to the file's current content under the lock, and keep the result."""
        if not self.writer:
            change(self.manifest)
            return
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                current = self._read() or {"format": MANIFEST_FORMAT, "runs": [], "units": {}}
                change(current)
                atomic_write_json(self.path, current)
                self.manifest = current
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def start(self, record: dict[str, Any]) -> str:
        """Add a run record; returns its id (for :meth:`update_run`)."""
        import uuid

        run_id = uuid.uuid4().hex[:12]
        entry = {**to_jsonable(record, "run record"), "run_id": run_id}
        self._update(lambda manifest: manifest["runs"].append(entry))
        return run_id

    def update_run(self, run_id: str, record: dict[str, Any]) -> None:
        """Replace the run record ``run_id`` (added by :meth:`start`)."""
        entry = {**to_jsonable(record, "run record"), "run_id": run_id}

        def change(manifest: dict[str, Any]) -> None:
            runs = manifest["runs"]
            for i, run in enumerate(runs):
                if run.get("run_id") == run_id:
                    runs[i] = entry
                    return
            runs.append(entry)

        self._update(change)

    def finished(self, key: str) -> dict[str, Any] | None:
        return self.manifest["units"].get(key)

    def finish(self, key: str, record: dict[str, Any]) -> None:
        entry = to_jsonable(record, "unit record")
        self._update(lambda manifest: manifest["units"].__setitem__(key, entry))
