"""Cross-check ddbench's hard-label evaluator against DD-Ranking's trainer on the same set.

DD-Ranking (``pip install ddranking==0.2.0``) lives in its own virtual environment; this script
runs in ddbench's and calls that environment's Python for DD-Ranking's side:

1. ``ddbench export SET --format ddranking`` writes the set in DD-Ranking's layout, normalised
   with DD-Ranking's statistics (:mod:`ddbench.interop.ddranking_format`), and the evaluation split is
   written the same way (``test_images.pt``, ``test_labels.pt``);
2. in DD-Ranking's environment, its ``ConvNet-3`` (``ddranking.utils.model.build_model``) is
   trained on the exported tensors with its own ``train_one_epoch`` and DSA
   (``ddranking.aug.DSA``), cross-entropy on the hard labels, AdamW at the budget's learning
   rate, weight decay and multi-step schedule, for the same epochs and seeds, and scored on the
   exported evaluation split at the last epoch;
3. ``ddbench eval SET --evaluator train`` trains ddbench's verifier under the same budget.

Both numbers are printed side by side (mean ± std over seeds). They are not expected to agree to
the decimal: the networks share the ConvNet-3 design but not their initialisation, and the DSA
implementations draw differently. Example (a ddbench set of tiny-imagenet-10 at 32 px, named as
a 10-class ImageNet subset so that DD-Ranking takes it)::

    python -m venv --system-site-packages /tmp/ddr && /tmp/ddr/bin/pip install ddranking==0.2.0
    python benchmarks/ddranking_crosscheck.py runs/x/distilled/random-<key>.safetensors \\
        --dataset imagefolder --data-root ../shared/data/tiny-imagenet-10 --image-size 32 \\
        --ddranking-dataset ImageNette --ddranking-python /tmp/ddr/bin/python --epochs 300 --seeds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path


def write_evaluation_split(args: argparse.Namespace, folder: Path) -> None:
    import torch

    from ddbench.contracts import DataOptions
    from ddbench.data.base import load_all
    from ddbench.interop.ddranking_format import ddranking_dataset, renormalize
    from ddbench.host.registry import get_dataset

    dataset = get_dataset(args.dataset).load(DataOptions(root=args.data_root, image_size=args.image_size))
    theirs = ddranking_dataset(dataset, args.ddranking_dataset)
    images = renormalize(load_all(dataset.test), dataset.normalization, theirs.normalization)
    torch.save(images.contiguous(), folder / "test_images.pt")
    torch.save(dataset.test.labels.clone(), folder / "test_labels.pt")


def ddbench_command(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "ddbench", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"ddbench {' '.join(args[:2])} failed:\n{done.stderr}")
    return done


def ddranking_worker(folder: Path, epochs: int, seeds: int, lr: float, weight_decay: float, batch_size: int) -> None:
    """Runs inside DD-Ranking's environment: its ConvNet-3, trainer and DSA on the exported tensors."""
    import torch
    from ddranking.aug import DSA
    from ddranking.utils.model import build_model
    from ddranking.utils.train_and_eval import train_one_epoch

    images = torch.load(folder / "export" / "images.pt")
    labels = torch.load(folder / "export" / "hard_labels.pt")
    test_images, test_labels = torch.load(folder / "test_images.pt"), torch.load(folder / "test_labels.pt")
    num_classes = int(json.loads((folder / "export" / "meta.json").read_text())["num_classes"])
    dsa_params = {"prob_flip": 0.5, "ratio_scale": 1.2, "ratio_rotate": 15.0, "ratio_crop_pad": 0.125,
                  "ratio_cutout": 0.5, "ratio_noise": 0.05, "brightness": 1.0, "saturation": 2.0, "contrast": 0.5,
                  "scale": 1.2, "rotate": 15.0, "flip": 0.5, "crop": 0.125, "cutout": 0.5}
    accuracies = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        model = build_model("ConvNet-3", num_classes=num_classes, im_size=tuple(images.shape[-2:]), device="cpu")
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [epochs // 2, epochs * 3 // 4], gamma=0.1)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=batch_size,
                                             shuffle=True, num_workers=0)
        for epoch in range(epochs):
            train_one_epoch(epoch, model, loader, torch.nn.CrossEntropyLoss(), optimizer, soft_label_mode="H",
                            aug_func=DSA(dsa_params), lr_scheduler=scheduler, log_interval=10 ** 9, device="cpu")
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in zip(test_images.split(500), test_labels.split(500)))
        accuracies.append(100.0 * correct / len(test_labels))
    print(json.dumps({"per_seed": accuracies}))


def summary(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {std:.2f} ({', '.join(f'{v:.2f}' for v in values)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("set", help="a ddbench distilled set (.safetensors)")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-root")
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--ddranking-dataset", help="DD-Ranking's name for imagefolder data (see ddbench export --help)")
    parser.add_argument("--ddranking-python", required=True, help="the Python of the environment ddranking is installed in")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--observer-epochs", type=int, help="the observer's epochs (it only gives the exported soft labels)")
    parser.add_argument("--cache-dir", help="observer cache (ddbench's --cache-dir)")
    parser.add_argument("--out", default="runs/ddranking-crosscheck")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = Path(args.out)
    if args.worker:
        ddranking_worker(folder, args.epochs, args.seeds, args.lr, args.weight_decay, args.batch_size)
        return 0
    data = ["--dataset", args.dataset, *(["--data-root", args.data_root] if args.data_root else []),
            *(["--image-size", str(args.image_size)] if args.image_size else []),
            *(["--observer-epochs", str(args.observer_epochs)] if args.observer_epochs else []),
            *(["--cache-dir", args.cache_dir] if args.cache_dir else [])]
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "export").exists():
        ddbench_command("export", args.set, "--format", "ddranking", "--out", str(folder / "export"), *data,
                        *(["--ddranking-dataset", args.ddranking_dataset] if args.ddranking_dataset else []))
    write_evaluation_split(args, folder)
    theirs = subprocess.run([args.ddranking_python, __file__, args.set, "--worker", "--out", str(folder), "--dataset",
                             args.dataset, "--ddranking-python", args.ddranking_python, "--epochs", str(args.epochs),
                             "--seeds", str(args.seeds), "--lr", str(args.lr), "--weight-decay", str(args.weight_decay),
                             "--batch-size", str(args.batch_size)], capture_output=True, text=True)
    if theirs.returncode != 0:
        raise SystemExit(f"DD-Ranking's side failed:\n{theirs.stderr[-3000:]}")
    ddranking = json.loads(theirs.stdout.strip().splitlines()[-1])["per_seed"]
    ddbench_command("eval", args.set, *data, "--evaluator", "train", "--verifier", "convnet3", "--seeds", str(args.seeds), "--budget-set",
                    f"epochs={args.epochs}", "--budget-set", f"batch_size={args.batch_size}", "--budget-set",
                    f"lr={args.lr}", "--budget-set", f"weight_decay={args.weight_decay}", "--out", str(folder / "ddbench"),
                    "--quiet")
    ours = json.loads((folder / "ddbench" / "results.json").read_text())
    entry = next(iter(ours["methods"].values()))
    print(f"hard labels, {args.epochs} epochs, AdamW lr {args.lr:g} wd {args.weight_decay:g}, multistep, DSA, batch "
          f"{args.batch_size}, {args.seeds} seeds, accuracy on the {ours['dataset']['evaluated_on']}:")
    print(f"  DD-Ranking {json.loads((folder / 'export' / 'meta.json').read_text())['ddranking_version']} ConvNet-3 "
          f"trainer: {summary(ddranking)}")
    print(f"  ddbench train evaluator ({ours['verifier']}): {summary(entry['accuracy']['per_seed'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
