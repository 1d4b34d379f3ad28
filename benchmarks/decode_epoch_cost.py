"""Data cost of one training epoch over an image folder: every training image loaded once in
random batches of 128, as observer training does, for two epochs; run twice to see a later
process read the saved pixels. With the decode-once path the second epoch decodes nothing.

    python benchmarks/decode_epoch_cost.py ../shared/data/tiny-imagenet-10 --image-size 32 --cache-dir /tmp/decoded
"""

from __future__ import annotations

import argparse
import time

import torch

from ddbench.contracts import DataOptions
from ddbench.host.registry import get_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--cache-dir", help="where decoded pixels are saved (none: kept in memory only)")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = get_dataset("imagefolder").load(DataOptions(root=args.root, image_size=args.image_size,
                                                         cache_dir=args.cache_dir, workers=args.workers))
    count = len(dataset.train)
    for epoch in range(2):
        started = time.perf_counter()
        for batch in torch.randperm(count).split(128):
            dataset.train.load(batch)
        print(f"epoch {epoch + 1}: {time.perf_counter() - started:.2f} s for {count} images")


if __name__ == "__main__":
    main()
