"""Differentiable Siamese Augmentation (DSA; Zhao & Bilen 2021, VICO-UoE/DatasetCondensation) on Kornia.

Strategy ``color_crop_cutout_flip_scale_rotate``. In ``mode="one_family"`` (DSA's default ``'S'`` mode)
each call applies ONE family drawn uniformly from the strategy; ``mode="all"`` (DSA's ``'M'``) applies
every family in strategy order. Families and the Kornia op behind each:

- ``color``: :class:`~ddbench.augment.color.DSABrightness`, ``DSASaturation``, ``DSAContrast`` in
  that order (DSA's formulas, no clamping).
- ``crop``: :class:`DSACrop`, a ``kornia.augmentation.RandomAffine`` whose generator draws DSA's integer
  translations ``dy ~ randint(-s_h, s_h)``, ``dx ~ randint(-s_w, s_w)``, ``s_h = int(0.125 H + 0.5)``,
  zero fill, nearest resampling (an exact pixel gather for integer shifts, as DSA's index gather).
- ``cutout``: :class:`DSACutout`, a ``kornia.augmentation.IntensityAugmentationBase2D`` subclass:
  a zero square of ``int(0.5 H + 0.5) x int(0.5 W + 0.5)`` at a random integer centre, clipped at the
  border (``RandomErasing`` always keeps its box inside the image, so it is not DSA's cutout).
- ``flip``: ``kornia.augmentation.RandomHorizontalFlip(p=0.5)``.
- ``scale``: :class:`DSAScale`, a ``RandomAffine`` with independent ``sx, sy ~ U[1/1.2, 1.2]``.
- ``rotate``: ``RandomAffine(degrees=15)``, angle ``~ U(-15, 15)`` degrees.

All geometric ops use ``padding_mode="zeros"`` (zero in normalised space), ``align_corners=True`` and
bilinear resampling (nearest for ``crop``), about the pixel-centre image centre ``((W-1)/2, (H-1)/2)``.

Parameter conventions (DSA builds ``F.affine_grid`` thetas that map OUTPUT to INPUT normalised
coordinates; Kornia's params describe the forward INPUT to OUTPUT map in pixels):

- scale: Kornia ``params["scale"] = (1/sx, 1/sy)``; DSA's theta is ``[[sx, 0, 0], [0, sy, 0]]`` with
  ``sx`` along the width. ``sx, sy`` are drawn from ``U[1/1.2, 1.2]`` exactly as DSA does (the reciprocal
  is taken after the draw, so the distribution is DSA's, not ``U`` on Kornia's zoom factor).
- rotate: with ``a = radians(params["angle"])``, DSA's theta is ``[[cos a, sin a, 0], [-sin a, cos a, 0]]``
  (DSA's own ``theta = -a``; the angle distribution is symmetric, so this is only a naming).
- crop: ``params["translations"] = (dx, dy)`` in pixels; ``out[i, j] = x[i - dy, j - dx]`` (zero outside).
- For square images (every DSA dataset) the normalised-coordinate thetas and Kornia's pixel-space
  matrices are the same map; for non-square images Kornia rotates rigidly in pixels, DSA does not.

Replay and siamese use: :meth:`DSA.draw` returns a :class:`DSAParams`. ``siamese=True`` draws every
Kornia parameter for a batch of ONE and :meth:`DSA.apply` expands each parameter tensor (a stride-0
view) to the batch it is applied to, so one draw transforms a real batch of 64 and a synthetic batch of
10 identically. ``siamese=False`` draws per-sample parameters for exactly ``shape[0]`` samples.

Randomness: every draw happens on the CPU. The family choice is ``torch.randint`` on the CPU generator
(a Python-level branch, no device sync). Kornia's samplers only use torch's global RNG, so with a
``torch.Generator`` (CPU) a seed is drawn from it and Kornia draws under ``torch.random.fork_rng(devices=[])``
seeded with it: the global RNG is left untouched and the same generator state gives the same draw.
Without a generator, the draw consumes torch's global CPU RNG (``torch.manual_seed`` makes it
reproducible). The small parameter tensors are then copied to the input's device non-blocking, so the
augmentation path never waits for the GPU, and the same seed gives the same parameters on CPU and GPU.
Every op is differentiable with respect to the input (each is linear in it for fixed parameters).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ddbench.augment.color import to_device
from ddbench.augment.dsa_ops import DSACrop, DSACutout, DSAScale, make_op

__all__ = ["DEFAULT_STRATEGY", "DSA", "DSACrop", "DSACutout", "DSAParams", "DSAScale", "FAMILY_OPS", "MODES",
           "parse_strategy"]

DEFAULT_STRATEGY = "color_crop_cutout_flip_scale_rotate"
MODES = ("one_family", "all")
FAMILY_OPS: Dict[str, Tuple[str, ...]] = {
    "color": ("brightness", "saturation", "contrast"),
    "crop": ("crop",),
    "cutout": ("cutout",),
    "flip": ("flip",),
    "scale": ("scale",),
    "rotate": ("rotate",),
}


def parse_strategy(strategy: str) -> Tuple[str, ...]:
    """Families of a DSA strategy string (``"a_b_c"``); ``""`` / ``"none"`` mean no augmentation."""
    if strategy.strip().lower() in ("", "none"):
        return ()
    families = tuple(part for part in strategy.split("_") if part)
    unknown = [f for f in families if f not in FAMILY_OPS]
    if unknown:
        raise ValueError(
            f"unknown DSA famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))} "
            f"in strategy {strategy!r}; valid families: {', '.join(FAMILY_OPS)}"
        )
    return families


@contextlib.contextmanager
def _kornia_rng(generator: Optional[torch.Generator]) -> Iterator[None]:
    """Make Kornia's global-RNG draws come from ``generator`` (CPU) without touching the global RNG."""
    if generator is None:
        yield
        return
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        yield


@dataclass(frozen=True)
class DSAParams:
    """One DSA draw: the families applied, and each Kornia op's parameter dict in application order.

    ``batch_size`` is ``None`` for a shared (siamese) draw, which replays on a batch of any size;
    otherwise the draw holds per-sample parameters for exactly ``batch_size`` samples.
    """

    families: Tuple[str, ...]
    ops: Tuple[Tuple[str, Dict[str, Tensor]], ...]
    batch_size: Optional[int]
    image_size: Tuple[int, int]

    @property
    def shared(self) -> bool:
        return self.batch_size is None

    def __getitem__(self, op: str) -> Dict[str, Tensor]:
        for name, params in self.ops:
            if name == op:
                return params
        raise KeyError(f"op {op!r} not in this draw (ops: {[name for name, _ in self.ops]})")

    def select(self, start: int, stop: int) -> "DSAParams":
        """Samples ``start:stop`` of a per-sample draw, each its own transform (a chunk's); a shared draw as it is."""
        if self.shared:
            return self
        if not 0 <= start <= stop <= self.batch_size:
            raise ValueError(f"samples {start}:{stop} are outside a draw for {self.batch_size}")

        def part(key: str, value):  # per-sample tensors lead with the draw's batch size
            sample = key != "forward_input_shape" and isinstance(value, Tensor) and value.dim() >= 1
            return value[start:stop] if sample and value.shape[0] == self.batch_size else value
        ops = tuple((name, {k: part(k, v) for k, v in params.items()}) for name, params in self.ops)
        return DSAParams(self.families, ops, stop - start, self.image_size)

    def to(self, device: torch.device | str) -> "DSAParams":
        """Copy the parameter tensors to ``device`` (non-blocking from CPU to CUDA)."""
        device = torch.device(device)
        ops = tuple(
            (name, {k: (v if k == "forward_input_shape" else to_device(v, device)) for k, v in params.items()})
            for name, params in self.ops
        )
        return DSAParams(self.families, ops, self.batch_size, self.image_size)


class DSA(nn.Module):
    """Differentiable Siamese Augmentation built from Kornia augmentations.

    Args:
        strategy: families joined by ``_`` (see :data:`FAMILY_OPS`); ``""``/``"none"`` is the identity.
        mode: ``"one_family"`` (one family drawn uniformly per call, DSA's default) or ``"all"``.
        generator: default CPU ``torch.Generator`` for calls that pass none; ``None`` uses torch's
            global CPU RNG.

    ``forward(x)`` augments with per-sample parameters (evaluation); ``siamese(a, b)`` applies one shared
    draw to two batches of possibly different sizes (distillation); ``draw`` + ``apply`` replay a draw.
    """

    def __init__(
        self,
        strategy: str = DEFAULT_STRATEGY,
        mode: str = "one_family",
        generator: Optional[torch.Generator] = None,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown DSA mode {mode!r}; valid modes: {', '.join(MODES)}")
        self.strategy = strategy
        self.mode = mode
        self.families = parse_strategy(strategy)
        self.generator = generator
        names = dict.fromkeys(op for family in self.families for op in FAMILY_OPS[family])
        self.ops = nn.ModuleDict({name: make_op(name) for name in names})

    def extra_repr(self) -> str:
        return f"strategy={self.strategy!r}, mode={self.mode!r}"

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> "DSA":
        # ``.to(device)`` moves Kornia's samplers too; DSA keeps every draw on the CPU (see module docs).
        out = super()._apply(fn, *args, **kwargs)
        for op in self.ops.values():
            op.set_rng_device_and_dtype(torch.device("cpu"), torch.float32)
        return out

    def _generator(self, generator: Optional[torch.Generator]) -> Optional[torch.Generator]:
        generator = self.generator if generator is None else generator
        if generator is not None and generator.device.type != "cpu":
            raise ValueError(f"DSA draws its parameters on the CPU; pass a CPU torch.Generator, got {generator.device}")
        return generator

    def draw(
        self,
        shape: Sequence[int],
        generator: Optional[torch.Generator] = None,
        *,
        siamese: bool = False,
        device: Optional[torch.device | str] = None,
    ) -> DSAParams:
        """Draw one set of parameters for a ``(B, C, H, W)`` batch.

        ``siamese=True``: one transform shared by every sample of every batch it is applied to
        (same_on_batch semantics, any batch size). ``siamese=False``: per-sample parameters for ``B``
        samples. ``device``: where to put the parameters (default: left on the CPU; :meth:`apply`
        moves them to the input's device).
        """
        shape = tuple(int(s) for s in shape)
        if len(shape) != 4:
            raise ValueError(f"expected a (B, C, H, W) shape, got {shape}")
        generator = self._generator(generator)
        families = self.families
        if self.mode == "one_family" and len(families) > 1:
            families = (families[int(torch.randint(len(families), (1,), generator=generator))],)
        draw_shape = (1, *shape[1:]) if siamese else shape
        with _kornia_rng(generator):
            ops = tuple(
                (name, self.ops[name].forward_parameters(draw_shape))
                for family in families
                for name in FAMILY_OPS[family]
            )
        params = DSAParams(families, ops, None if siamese else shape[0], (shape[2], shape[3]))
        return params if device is None else params.to(device)

    def _replay(self, params: Dict[str, Tensor], x: Tensor, shared: bool) -> Dict[str, Tensor]:
        batch = x.shape[0]
        out: Dict[str, Tensor] = {}
        for key, value in params.items():
            if key == "forward_input_shape":
                out[key] = torch.tensor(tuple(x.shape), dtype=torch.long)
                continue
            if isinstance(value, Tensor):
                value = to_device(value, x.device)
                if shared and value.dim() >= 1:
                    value = value.expand(batch, *value.shape[1:])
            out[key] = value
        return out

    def apply(self, x: Tensor, params: DSAParams) -> Tensor:
        """Replay a draw on ``x`` (``(B, C, H, W)``); a shared draw fits any ``B``."""
        if x.dim() != 4:
            raise ValueError(f"expected a (B, C, H, W) batch, got shape {tuple(x.shape)}")
        if tuple(x.shape[-2:]) != params.image_size:
            raise ValueError(f"parameters were drawn for {params.image_size} images, got {tuple(x.shape[-2:])}")
        if not params.shared and params.batch_size != x.shape[0]:
            raise ValueError(
                f"per-sample parameters were drawn for a batch of {params.batch_size}, got {x.shape[0]}; "
                "draw with siamese=True to share one transform across batches of different sizes"
            )
        for name, op_params in params.ops:
            x = self.ops[name](x, params=self._replay(op_params, x, params.shared))
        return x

    def apply_each(self, blocks: Sequence[Tensor], params: Sequence[DSAParams]) -> list[Tensor]:
        """``[self.apply(x, p) for x, p in zip(blocks, params)]`` for shared draws, in one op call
        per group of blocks that drew the same families (DM: a draw per class) instead of one per
        block: a group's blocks go through each op together, every sample with its own block's
        parameters. Each sample's transform is the one :meth:`apply` gives it."""
        if len(blocks) != len(params):
            raise ValueError(f"{len(blocks)} blocks but {len(params)} draws: give one draw per block")
        if any(not p.shared for p in params):
            raise ValueError("apply_each replays shared draws (siamese=True); apply per-sample draws with apply")
        groups: Dict[Tuple[str, ...], list[int]] = {}
        for index, draw in enumerate(params):
            groups.setdefault(draw.families, []).append(index)
        out: list[Optional[Tensor]] = [None] * len(blocks)
        for members in groups.values():
            if len(members) == 1:
                out[members[0]] = self.apply(blocks[members[0]], params[members[0]])
                continue
            sizes = [int(blocks[i].shape[0]) for i in members]
            x = torch.cat([blocks[i] for i in members])
            if tuple(x.shape[-2:]) != params[members[0]].image_size or any(
                    params[i].image_size != params[members[0]].image_size for i in members):
                raise ValueError(f"every draw must fit the blocks' {tuple(x.shape[-2:])} images")
            for position, (name, _) in enumerate(params[members[0]].ops):
                # each block's draw as apply replays it on that block, then the blocks' rows together
                replayed = [self._replay(params[i].ops[position][1], blocks[i], shared=True) for i in members]
                per_sample = {key: torch.cat([r[key] for r in replayed])
                              if isinstance(value, Tensor) and value.dim() >= 1 and key != "forward_input_shape" else value
                              for key, value in replayed[0].items()}
                if "forward_input_shape" in per_sample:
                    per_sample["forward_input_shape"] = torch.tensor(tuple(x.shape), dtype=torch.long)
                x = self.ops[name](x, params=per_sample)
            for i, part in zip(members, x.split(sizes)):
                out[i] = part
        return out  # type: ignore[return-value]

    def forward(
        self, x: Tensor, params: Optional[DSAParams] = None, generator: Optional[torch.Generator] = None
    ) -> Tensor:
        """Per-sample random augmentation (evaluation mode), or a replay of ``params`` if given."""
        if params is None:
            params = self.draw(x.shape, generator, siamese=False, device=x.device)
        return self.apply(x, params)

    def siamese(self, a: Tensor, b: Tensor, generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
        """Apply ONE draw, shared by every sample, to both batches (e.g. real 64 and synthetic 10)."""
        params = self.draw(a.shape, generator, siamese=True, device=a.device)
        return self.apply(a, params), self.apply(b, params)
