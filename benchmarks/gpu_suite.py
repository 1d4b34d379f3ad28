"""Every GPU measurement of the any-scale work in one go, for a machine with a CUDA GPU.

    python benchmarks/gpu_suite.py --data-root ../shared/data/tiny-imagenet-10 --out runs/gpu-suite

Runs, each as its own command, with its output kept under ``--out``:

1. the CUDA tests: no host sync in the verifier's epoch and in LIC's compensation, bf16 LIC;
2. the paper's Table 3 setting on real data: ``ddbench bench --methods lic,sre2l --arch
   convnet4-bn --dataset imagefolder --image-size 64 --option lic.n=4`` (time per 100 images, peak
   ``max_memory_allocated``; the paper: LIC 13.02 s / 0.65 GB, SRe2L 51.68 s / 1.36 GB on an RTX 4090);
3. the memory benchmarks (evaluation and LIC against the number of images) on the GPU, and DM's
   matching step with a pass per class against all classes in one pass;
4. observer training at 32 px on the GPU (wall time, images decoded once by worker processes),
   and evaluation with and without the opt-in ``torch.compile``;
5. issue 16's table on tiny-imagenet-10 at 32 px, IPC 1, 10 and 50 (``ipc_table``) and at 64 px with
   convnet4-bn and SRe2L (``table_64px``), and issue 18's cross-architecture table (``cross_arch``;
   DM's 20,000 iterations are most of it).

``--steps ipc_table,cross_arch`` runs some of them; ``--deadline SECONDS`` bounds them all together
(a step still running then is stopped and recorded as cut; a ddbench run resumes from its
manifest next time); ``--bundle FILE.tgz`` keeps the text they wrote (results, tables, logs) in one
small archive, rewritten after each step. It prints a line per step and writes ``summary.json``
after each. Nothing here runs without a GPU. ddbench must be installed there (``pip install .``,
or its wheel): its methods load through entry points, which a checkout on ``PYTHONPATH`` lacks.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path


MIN_STEP_SECONDS = 20  # under a deadline, a step with less time than this left is skipped, not started
BUNDLED = (".json", ".md", ".csv", ".tex", ".log", ".toml", ".txt")  # what --bundle keeps: text, never sets or images


def run(command: list[str], log: Path, timeout: float | None = None) -> dict:
    """Run one step, its output to ``log``; past ``timeout`` seconds its whole process group is
    stopped and the step is recorded as cut (a ddbench run resumes from its manifest next time)."""
    started = time.perf_counter()
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            returncode, cut = process.wait(timeout=timeout), False
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            returncode, cut = process.wait(), True
    entry = {"command": " ".join(command), "returncode": returncode, "seconds": round(time.perf_counter() - started, 1),
             "log": str(log)}
    if cut:
        entry["cut"] = f"stopped at the deadline after {timeout:.0f} s"
    return entry


def bundle(out: Path, archive: Path, max_bytes: int = 4 << 20) -> None:
    """The text ``out`` holds (results, tables, logs; files up to ``max_bytes``) as one .tgz: what a
    lent machine can hand back when sets and image grids are too large to."""
    partial = archive.with_name(archive.name + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        for path in sorted(out.rglob("*")):
            if path.is_file() and path.suffix in BUNDLED and path.stat().st_size <= max_bytes and path != archive:
                tar.add(path, arcname=str(path.relative_to(out)))
    partial.replace(archive)


def outcome(entry: dict) -> str:
    """One step's summary entry in words."""
    if "skipped" in entry:
        return f"skipped, {entry['skipped']}"
    cut = " (cut at the deadline)" if "cut" in entry else ""
    return f"exit {entry['returncode']} in {entry['seconds']} s{cut} ({entry['log']})"


def run_steps(steps: dict[str, list[str]], chosen: list[str], out: Path, deadline: float | None = None,
              archive: Path | None = None) -> dict:
    """Run the ``chosen`` steps in order within ``deadline`` seconds in all (None: no limit),
    writing ``summary.json`` (and the ``archive`` bundle) after each, so a machine taken back
    mid-suite still leaves what finished."""
    started = time.perf_counter()
    summary: dict = {}
    for name in chosen:
        left = None if deadline is None else deadline - (time.perf_counter() - started)
        if left is not None and left < MIN_STEP_SECONDS:
            summary[name] = {"skipped": f"{max(left, 0):.0f} s of the {deadline:.0f} s deadline left"}
        else:  # a step runs for minutes: say which, and where its own progress lines go
            print(f"{name}: started ({out / f'{name}.log'}" + (f", {left:.0f} s of the deadline left)" if left else ")"),
                  flush=True)
            summary[name] = run(steps[name], out / f"{name}.log", timeout=left)
        print(f"{name}: {outcome(summary[name])}", flush=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if archive is not None:
            bundle(out, archive)
    return summary


def suite_steps(python: str, data_root: str, out: Path) -> dict[str, list[str]]:
    """Every step's command, in the order they run."""
    data = ["--dataset", "imagefolder", "--data-root", data_root, "--cache-dir", str(out / "cache")]
    ddbench = [python, "-m", "ddbench"]
    return {
        "cuda_tests": [python, "-m", "pytest", "-q", "tests/test_gpu_path.py", "tests/test_dsa.py", "tests/test_lic.py", "tests/test_dm.py",
                       "-k", "cuda or sync or compile"],
        "bench_table3": [*ddbench, "bench", "--methods", "lic,sre2l", "--arch", "convnet4-bn", *data,
                         "--image-size", "64", "--option", "lic.n=4", "--device", "cuda", "--out", str(out / "bench"),
                         "--quiet"],  # the paper's Table 3: N = 4 (unset, 64 px takes N = 1)
        "memory_benchmarks": [python, "-m", "pytest", "-q", "-s", "benchmarks/test_eval_memory.py",
                              "benchmarks/test_lic_memory.py", "--benchmark-disable"],
        # DM on CUDA: all classes together must not be slower than a pass per class, nor DSA's apply_each than a call per class
        "dm_matching": [python, "-m", "pytest", "-q", "-s", "benchmarks/test_dm_matching.py", "benchmarks/test_dsa_apply_each.py",
                        "--benchmark-disable"],
        "observer_train": [*ddbench, "observer", "train", *data, "--image-size", "32", "--device", "cuda",
                           "--observer-seed", "1", "--quiet"],
        # evaluation with and without the opt-in torch.compile (same seeds; compare the eval_seconds in results.json)
        "eval_plain": [*ddbench, "run", "--method", "random", *data, "--image-size", "32", "--device", "cuda",
                       "--observer-seed", "1", "--out", str(out / "eval-plain"), "--quiet"],
        "eval_compiled": [*ddbench, "run", "--method", "random", *data, "--image-size", "32", "--device",
                          "cuda", "--observer-seed", "1", "--option", "budget.compile=on", "--out",
                          str(out / "eval-compiled"), "--quiet"],
        # issue 16's table at IPC 1, 10 and 50 (the README's GPU table; about 4 minutes on an H200)
        "ipc_table": [*ddbench, "run", "--method", "lic", "--baseline", "random", "--baseline", "squeeze", "--baseline",
                      "sre2l", *data, "--image-size", "32", "--ipc", "1,10,50", "--device", "cuda",
                      "--out", str(out / "ipc-table"), "--progress-every", "30"],
        # issue 16 at 64 px with the paper's Conv-4 (SRe2L's 4000 recover iterations are hours on a CPU)
        "table_64px": [*ddbench, "run", "--method", "lic", "--baseline", "random", "--baseline", "squeeze", "--baseline",
                       "sre2l", *data, "--image-size", "64", "--arch", "convnet4-bn", "--ipc", "10", "--device", "cuda",
                       "--out", str(out / "table-64px"), "--progress-every", "30"],
        # issue 18's Table 2 analogue (DM's 20,000 iterations alone took about 25 minutes on an H200 while
        # every iteration waited for the host; that wait is gone, the new speed is not yet measured)
        "cross_arch": [*ddbench, "cross-arch", "--methods", "lic,rded,sre2l,squeeze,dm,random", "--observers",
                       "convnet3-bn", "--verifiers", "convnet3-bn,resnet18,mobilenetv2", *data, "--image-size", "32",
                       "--ipc", "10", "--device", "cuda", "--out", str(out / "cross-arch"), "--progress-every", "30"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True, help="tiny-imagenet-10 (or any image folder)")
    parser.add_argument("--out", default="runs/gpu-suite")
    parser.add_argument("--steps", default="", help="comma list of the steps to run, in the suite's order "
                                                    "(default: all; a machine lent for minutes wants a few)")
    parser.add_argument("--deadline", type=float, default=None, metavar="SECONDS",
                        help="wall time for all the steps together: a step still running then is stopped (recorded "
                             "as cut), later ones are skipped (default: no limit)")
    parser.add_argument("--bundle", default="", metavar="FILE.tgz",
                        help="after each step, write the text under --out (results, tables, logs) to this archive")
    args = parser.parse_args(argv)
    out = Path(args.out)
    steps = suite_steps(sys.executable, args.data_root, out)
    chosen = [name.strip() for name in args.steps.split(",") if name.strip()] or list(steps)
    unknown = [name for name in chosen if name not in steps]
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)}; the steps: {', '.join(steps)}")
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("gpu_suite.py needs a CUDA GPU; torch sees none")
    out.mkdir(parents=True, exist_ok=True)
    archive = Path(args.bundle) if args.bundle else None
    summary = run_steps(steps, [name for name in steps if name in chosen], out, args.deadline, archive)
    bench = out / "bench" / "bench.json"
    if bench.exists():
        summary["bench"] = json.loads(bench.read_text())
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if archive is not None:
        bundle(out, archive)
    return 0 if all(entry.get("returncode") == 0 for name, entry in summary.items() if name != "bench") else 1


if __name__ == "__main__":
    raise SystemExit(main())
