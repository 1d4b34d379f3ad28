"""Every GPU measurement of the any-scale work in one go, for a machine with a CUDA GPU.

    python benchmarks/gpu_suite.py --data-root ../shared/data/tiny-imagenet-10 --out runs/gpu-suite

Runs, each as its own command, with its output kept under ``--out``:

1. the CUDA tests: no host sync in the verifier's epoch and in LIC's compensation, bf16 LIC;
2. the paper's Table 3 setting on real data: ``ddbench bench --methods lic,sre2l --arch
   convnet4-bn --dataset imagefolder --image-size 64 --option lic.n=4`` (time per 100 images, peak
   ``max_memory_allocated``; the paper: LIC 13.02 s / 0.65 GB, SRe2L 51.68 s / 1.36 GB on an RTX 4090);
3. the memory benchmarks (evaluation and LIC against the number of images) on the GPU, and DM's
   matching step with a pass per class against all classes in one pass;
4. observer training at 32 px on the GPU (wall time, images decoded once by worker processes).

It prints one summary and writes ``summary.json``. Nothing here runs without a GPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def run(command: list[str], log: Path) -> dict:
    started = time.perf_counter()
    with open(log, "w") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, text=True)
    return {"command": " ".join(command), "returncode": done.returncode, "seconds": round(time.perf_counter() - started, 1),
            "log": str(log)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True, help="tiny-imagenet-10 (or any image folder)")
    parser.add_argument("--out", default="runs/gpu-suite")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("gpu_suite.py needs a CUDA GPU; torch sees none")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    data = ["--dataset", "imagefolder", "--data-root", args.data_root, "--cache-dir", str(out / "cache")]
    steps = {
        "cuda_tests": [python, "-m", "pytest", "-q", "tests/test_gpu_path.py", "tests/test_lic.py", "-k", "cuda or sync"],
        "bench_table3": [python, "-m", "ddbench", "bench", "--methods", "lic,sre2l", "--arch", "convnet4-bn", *data,
                         "--image-size", "64", "--option", "lic.n=4", "--device", "cuda", "--out", str(out / "bench"),
                         "--quiet"],  # the paper's Table 3: N = 4 (unset, 64 px takes N = 1)
        "memory_benchmarks": [python, "-m", "pytest", "-q", "-s", "benchmarks/test_eval_memory.py",
                              "benchmarks/test_lic_memory.py", "--benchmark-disable"],
        # DM's passes on CUDA: all classes together must not be slower than a pass per class
        "dm_matching": [python, "-m", "pytest", "-q", "-s", "benchmarks/test_dm_matching.py", "--benchmark-disable"],
        "observer_train": [python, "-m", "ddbench", "observer", "train", *data, "--image-size", "32", "--device", "cuda",
                          "--observer-seed", "1", "--quiet"],
        # evaluation with and without the opt-in torch.compile (same seeds; compare the eval_seconds in results.json)
        "eval_plain": [python, "-m", "ddbench", "run", "--method", "random", *data, "--image-size", "32", "--device", "cuda",
                       "--observer-seed", "1", "--out", str(out / "eval-plain"), "--quiet"],
        "eval_compiled": [python, "-m", "ddbench", "run", "--method", "random", *data, "--image-size", "32", "--device",
                          "cuda", "--observer-seed", "1", "--option", "budget.compile=on", "--out",
                          str(out / "eval-compiled"), "--quiet"],
    }
    summary = {name: run(command, out / f"{name}.log") for name, command in steps.items()}
    for name, entry in summary.items():
        print(f"{name}: exit {entry['returncode']} in {entry['seconds']} s ({entry['log']})")
    bench = out / "bench" / "bench.json"
    if bench.exists():
        summary["bench"] = json.loads(bench.read_text())
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if all(entry.get("returncode", 0) == 0 for entry in summary.values() if isinstance(entry, dict)) else 1


if __name__ == "__main__":
    raise SystemExit(main())
