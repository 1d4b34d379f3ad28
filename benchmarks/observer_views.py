"""How well an observer labels the views a distilled set shows it: its accuracy on the run's
evaluation images whole, and shrunk to one tile of a side x side squeeze and expanded back
(``ddbench.tiles.as_tiles``: what LIC's N = side² tiles look like to the relabel teacher before
compensation); and, for saved sets (``--set``), on their own expanded tiles against their
classes, with the mean probability it gives the class (what the relabel evaluator's soft labels
are drawn from).

    python benchmarks/observer_views.py --dataset imagefolder --data-root ../shared/data/tiny-imagenet-10 \\
        --image-size 32 --validation 50 [--observer-low-res 0.5] [--sides 1,2,3] [--set RUN/distilled/lic-*.safetensors]

The observer is found (or trained) as ``ddbench run`` finds it, from the same data and observer
flags (``--observer-seed``, ``--observer-epochs``, ``--observer-shift``, ``--observer-low-res``,
``--observer``, ``--cache-dir``, ``--device``); ``--validation N`` scores the held-out images of the validation split, never
the test split, as a search must. Prints one markdown row per side.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ddbench.data.base import Dataset
from ddbench.contracts import DistilledSet
from ddbench.runtime.metrics import accuracy
from ddbench.tiles import as_tiles, expand


PROGRESS_EVERY = 60.0  # seconds between progress lines when the output is a log file


class ShownAsTiles(torch.nn.Module):
    """``model`` looking at each image as one tile of a ``side`` x ``side`` squeeze expanded back."""

    def __init__(self, model: torch.nn.Module, side: int) -> None:
        super().__init__()
        self.model, self.side = model, side

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(as_tiles(images, self.side))


def view_accuracies(model: torch.nn.Module, dataset: Dataset, device: torch.device, sides: list[int],
                    batch_size: int = 500) -> dict[int, float]:
    """Top-1 accuracy (%) of ``model`` on ``dataset.test`` (``ddbench.runtime.metrics.accuracy``),
    each image shown as one tile of a ``side`` x ``side`` squeeze expanded back (side 1: the
    image itself), for every side."""
    return {side: accuracy(ShownAsTiles(model, side), dataset.test, device, batch_size) for side in sides}


def set_scores(model: torch.nn.Module, distilled: DistilledSet, device: torch.device,
               batch_size: int = 500) -> tuple[float, float]:
    """``model``'s top-1 accuracy (%) on every expanded tile of ``distilled`` against the class of
    its image, and the mean probability (%) it gives that class. Tiles are expanded a batch of
    images at a time (about ``batch_size`` tiles), never the whole set up front."""
    per_image = distilled.tile_grid ** 2
    images_per_batch = max(1, batch_size // per_image)
    correct = torch.zeros((), dtype=torch.long, device=device)
    probability = torch.zeros((), dtype=torch.float64, device=device)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(distilled.images), images_per_batch):
            images = distilled.images[start:start + images_per_batch].to(device)
            logits = model(expand(images, distilled.tile_grid)).float()
            target = distilled.labels[start:start + images_per_batch].to(device).repeat_interleave(per_image)
            correct += (logits.argmax(1) == target).sum()
            probability += logits.softmax(1).gather(1, target.view(-1, 1)).sum()
    tiles = len(distilled.images) * per_image
    return 100.0 * int(correct) / tiles, 100.0 * float(probability) / tiles


def parse(argv: list[str]) -> argparse.Namespace:
    """The data and observer flags of ``ddbench run`` (the same parser pieces, so a recipe setting
    added there is one here too), the validation split, and this script's own."""
    from ddbench.cli.arguments import _add_data_args, _add_observer_args, _at_least

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _add_data_args(parser)
    _add_observer_args(parser)
    parser.add_argument("--validation", type=_at_least("--validation", 0, "0 scores the test split"), default=0,
                        metavar="N", help="images per class held out (0: the test split)")
    parser.add_argument("--validation-seed", type=int, default=0)
    parser.add_argument("--sides", default="1,2,3", help="tile grid sides to show the images at (1: whole)")
    parser.add_argument("--set", action="append", default=[], metavar="PATH",
                        help="a saved distilled set of this dataset (repeatable): score the observer on its tiles")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from ddbench.host import registry
    from ddbench.observer import default_recipe, observer_for
    from ddbench.pipeline.config import data_options
    from ddbench.pipeline.preflight import check_saved_fits, fingerprint_ahead
    from ddbench.reporting.console import ConsoleUI
    from ddbench.runtime.measure import resolve_device
    from ddbench.settings.observer_fields import recipe_overrides
    from ddbench.store.artifacts import load_distilled

    args = parse(sys.argv[1:] if argv is None else argv)
    sides = [int(part) for part in args.sides.split(",") if part.strip()]
    if not sides or min(sides) < 1:
        raise SystemExit(f"--sides takes grid sides of at least 1 (1,2,3), got {args.sides!r}")
    spec = registry.get_dataset(args.dataset)
    try:  # the recipe's own checks (they name the flag and its range), before the data loads
        default_recipe(args.dataset, **recipe_overrides(args))
    except ValueError as error:
        raise SystemExit(f"observer_views.py: {error}") from None
    dataset = spec.load(data_options(args))
    if args.validation:
        dataset = dataset.with_validation_split(args.validation, args.validation_seed)
    saved = []
    for path in args.set:  # refused before the observer is found or trained
        distilled, meta = load_distilled(Path(path))
        check_saved_fits(meta, dataset, Path(path))
        saved.append((path, distilled))
    device = resolve_device(args.device)
    arch = registry.get_architecture(args.arch or spec.default_arch)
    with ConsoleUI(every=PROGRESS_EVERY) as ui:  # an observer trained here reports its progress
        fingerprint_ahead(dataset, ui)
        observer = observer_for(args, dataset, arch, device, progress_factory=ui.progress)
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
