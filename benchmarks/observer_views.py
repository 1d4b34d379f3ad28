"""How well an observer labels the views a distilled set shows it: its accuracy on the run's
evaluation images whole, and shrunk to one tile of a side x side squeeze and expanded back
(``ddbench.tiles.as_tiles``: what LIC's N = side² tiles look like to the relabel teacher before
compensation); and, for saved sets (``--set``), on their own expanded tiles against their
classes, with the mean probability it gives the class (what the relabel evaluator's soft labels
are drawn from).

    python benchmarks/observer_views.py --dataset imagefolder --data-root ../shared/data/tiny-imagenet-10 \\
        --image-size 32 --validation 50 [--observer-low-res 0.5] [--sides 1,2,3] [--set RUN/distilled/lic-*.safetensors]

The observer is found (or trained) as ``ddbench run`` finds it, from the same observer flags
(``--observer-seed``, ``--observer-epochs``, ``--observer-shift``, ``--observer-low-res``,
``--cache-dir``); ``--validation N`` scores the held-out images of the validation split, never
the test split, as a search must. Prints one markdown row per side.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

from ddbench.data.base import Dataset
from ddbench.data.batches import BatchReader
from ddbench.contracts import DistilledSet
from ddbench.tiles import as_tiles, expand


def view_accuracies(model: torch.nn.Module, dataset: Dataset, device: torch.device, sides: list[int],
                    batch_size: int = 500) -> dict[int, float]:
    """Top-1 accuracy (%) of ``model`` on ``dataset.test``, each image shown as one tile of a
    ``side`` x ``side`` squeeze expanded back (side 1: the image itself), for every side."""
    correct = torch.zeros(len(sides), dtype=torch.long, device=device)
    model.eval()
    reader = BatchReader(dataset.test, device)
    with torch.no_grad():
        for batch, images in reader(torch.arange(len(dataset.test)), batch_size):
            labels = dataset.test.labels[batch].to(device)
            for row, side in enumerate(sides):
                correct[row] += (model(as_tiles(images, side)).argmax(1) == labels).sum()
    return {side: 100.0 * int(count) / len(dataset.test) for side, count in zip(sides, correct.tolist())}


def set_scores(model: torch.nn.Module, distilled: DistilledSet, device: torch.device,
               batch_size: int = 500) -> tuple[float, float]:
    """``model``'s top-1 accuracy (%) on every expanded tile of ``distilled`` against the class of
    its image, and the mean probability (%) it gives that class."""
    tiles = expand(distilled.images, distilled.tile_grid)
    labels = distilled.labels.repeat_interleave(distilled.tile_grid ** 2)
    correct = torch.zeros((), dtype=torch.long, device=device)
    probability = torch.zeros((), dtype=torch.float64, device=device)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(tiles), batch_size):
            logits = model(tiles[start:start + batch_size].to(device)).float()
            target = labels[start:start + batch_size].to(device)
            correct += (logits.argmax(1) == target).sum()
            probability += logits.softmax(1).gather(1, target.view(-1, 1)).sum()
    return 100.0 * int(correct) / len(tiles), 100.0 * float(probability) / len(tiles)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-root")
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--arch", help="observer architecture (default: the dataset's)")
    parser.add_argument("--validation", type=int, default=0, help="images per class held out (0: the test split)")
    parser.add_argument("--validation-seed", type=int, default=0)
    parser.add_argument("--observer-seed", type=int, default=0)
    parser.add_argument("--observer-epochs", type=int)
    parser.add_argument("--observer-shift", type=float)
    parser.add_argument("--observer-low-res", type=float)
    parser.add_argument("--cache-dir")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sides", default="1,2,3", help="tile grid sides to show the images at (1: whole)")
    parser.add_argument("--set", action="append", default=[], metavar="PATH",
                        help="a saved distilled set of this dataset (repeatable): score the observer on its tiles")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from ddbench.host import registry
    from ddbench.observer import observer_for
    from ddbench.pipeline.config import data_options
    from ddbench.runtime.measure import resolve_device

    args = parse(sys.argv[1:] if argv is None else argv)
    sides = [int(part) for part in args.sides.split(",") if part.strip()]
    if not sides or min(sides) < 1:
        raise SystemExit(f"--sides takes grid sides of at least 1 (1,2,3), got {args.sides!r}")
    spec = registry.get_dataset(args.dataset)
    dataset = spec.load(data_options(SimpleNamespace(**vars(args), download=False)))
    if args.validation:
        dataset = dataset.with_validation_split(args.validation, args.validation_seed)
    from ddbench.pipeline.preflight import check_saved_fits
    from ddbench.store.artifacts import load_distilled

    saved = []
    for path in args.set:  # refused before the observer is found or trained
        distilled, meta = load_distilled(Path(path))
        check_saved_fits(meta, dataset, Path(path))
        saved.append((path, distilled))
    device = resolve_device(args.device)
    arch = registry.get_architecture(args.arch or spec.default_arch)
    observer = observer_for(SimpleNamespace(**vars(args), observer_checkpoint=None), dataset, arch, device)
    accuracies = view_accuracies(observer.model, dataset, device, sides)
    recipe = observer.recipe
    print(f"observer {arch.name} ({observer.checkpoint.name}; shift {recipe.get('shift', 0.0)}, low_res "
          f"{recipe.get('low_res', 0.0)}) on {len(dataset.test)} {dataset.evaluation_split} images")
    print("| view | accuracy % |\n| --- | --- |")
    for side, value in accuracies.items():
        print(f"| {'whole image' if side == 1 else f'one tile of {side} x {side}, expanded'} | {value:.2f} |")
    if saved:
        print("\n| set | tiles | accuracy on its tiles % | mean probability of the class % |\n| --- | --- | --- | --- |")
    for path, distilled in saved:
        top1, probability = set_scores(observer.model, distilled, device)
        tiles = len(distilled.labels) * distilled.tile_grid ** 2
        print(f"| {path} ({distilled.method}) | {tiles} | {top1:.2f} | {probability:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
