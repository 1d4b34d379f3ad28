"""Tests for ddbench.augment (DSA on Kornia): replay, siamese, per-sample, formulas, seeding, gradients."""

from __future__ import annotations

import math
import types

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kornia")

import torch.nn.functional as F  # noqa: E402

from ddbench.augment import DSA, DSAParams, parse_strategy  # noqa: E402
from ddbench.augment.dsa import FAMILY_OPS  # noqa: E402

FAMILIES = ("color", "crop", "cutout", "flip", "scale", "rotate")
H = W = 32


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int, seed: int = 0, size: int = H) -> torch.Tensor:
    # Normalised-space images: values well outside [0, 1] on purpose (DSA must not clamp).
    return torch.randn(n, 3, size, size, generator=gen(seed)) * 1.5


# --------------------------------------------------------------------------- replay / siamese


@pytest.mark.parametrize("family", FAMILIES + ("all",))
def test_shared_draw_replays_identically_on_batches_of_different_sizes(family):
    dsa = DSA(mode="all") if family == "all" else DSA(family)
    img = images(1, seed=1)
    real, syn = images(64, seed=2), images(10, seed=3)
    real[5], real[40], syn[3] = img[0], img[0], img[0]
    changed = False
    for seed in range(4):
        params = dsa.draw(real.shape, gen(seed), siamese=True)
        assert params.shared and params.families
        out_real, out_syn = dsa.apply(real, params), dsa.apply(syn, params)
        # Kornia saw the shared draw expanded to this batch (not a batch-1 dict it would broadcast or sync on)
        for name, _ in params.ops:
            seen = dsa.ops[name]._params
            assert all(v.shape[0] == 10 for k, v in seen.items() if k != "forward_input_shape"), name
        assert out_real.shape == real.shape and out_syn.shape == syn.shape
        # the same image gets the same transform wherever it sits, in either batch
        assert torch.equal(out_real[5], out_syn[3])
        assert torch.equal(out_real[40], out_syn[3])
        # every sample of both batches got the one transform: batch == sample-by-sample replay
        for batch, out in ((real, out_real), (syn, out_syn)):
            for i in (0, 3, batch.shape[0] - 1):
                torch.testing.assert_close(out[i : i + 1], dsa.apply(batch[i : i + 1], params), rtol=0, atol=1e-6)
        changed |= not torch.allclose(out_syn[3], img[0])
    assert changed, "the family never changed the image"


@pytest.mark.parametrize("family", FAMILIES)
def test_siamese_gives_every_sample_of_both_batches_the_same_transform(family):
    dsa = DSA(family)
    img = images(1, seed=4)
    a, b = img.repeat(64, 1, 1, 1), img.repeat(10, 1, 1, 1)
    for seed in range(3):
        out_a, out_b = dsa.siamese(a, b, generator=gen(seed))
        ref = out_b[0]
        assert all(torch.equal(o, ref) for o in out_a) and all(torch.equal(o, ref) for o in out_b)


def test_siamese_is_a_shared_draw():
    dsa = DSA(mode="all")
    a, b = images(7, seed=5), images(3, seed=6)
    out_a, out_b = dsa.siamese(a, b, generator=gen(11))
    params = dsa.draw(a.shape, gen(11), siamese=True)
    assert torch.equal(out_a, dsa.apply(a, params)) and torch.equal(out_b, dsa.apply(b, params))


def test_a_slice_of_a_per_sample_draw_replays_those_samples_transforms():
    dsa = DSA(mode="all")
    batch = images(9, seed=7)
    params = dsa.draw(batch.shape, gen(13), siamese=False)
    whole = dsa.apply(batch, params)
    for start, stop in ((0, 4), (4, 9), (2, 3)):
        torch.testing.assert_close(dsa.apply(batch[start:stop], params.select(start, stop)), whole[start:stop],
                                   rtol=0, atol=1e-6)
    assert not torch.allclose(whole[0], dsa.apply(batch[:1], dsa.draw(batch[:1].shape, gen(14), siamese=False))[0])
    shared = dsa.draw(batch.shape, gen(13), siamese=True)
    assert shared.select(2, 5) is shared  # a shared draw fits any slice as it is
    with pytest.raises(ValueError, match="outside a draw for 9"):
        params.select(5, 12)


@pytest.mark.parametrize("mode", ("one_family", "all"))
def test_apply_each_is_apply_per_block_in_fewer_calls(mode):
    dsa = DSA(mode=mode)
    generator = gen(21)
    sizes = (7, 3, 1, 12, 5, 9, 2, 4, 6, 8)
    for round_ in range(4):
        blocks = [images(n, seed=100 * round_ + i).requires_grad_(True) for i, n in enumerate(sizes)]
        params = [dsa.draw((1, 3, H, W), generator, siamese=True) for _ in blocks]
        calls = []
        handles = [op.register_forward_pre_hook(lambda module, inputs: calls.append(module)) for op in dsa.ops.values()]
        together = dsa.apply_each(blocks, params)
        for handle in handles:
            handle.remove()
        alone = [dsa.apply(block, draw) for block, draw in zip(blocks, params)]
        assert all(torch.equal(a, b) for a, b in zip(together, alone))  # bit for bit, every block
        ops_per_draw = [len(draw.ops) for draw in params]
        groups = {draw.families: len(draw.ops) for draw in params}
        assert len(calls) == sum(groups.values()) < sum(ops_per_draw)  # one call per op of each group
        weights = [torch.randn_like(a) for a in alone]
        grads_together = torch.autograd.grad(sum((w * a).sum() for w, a in zip(weights, together)), blocks)
        grads_alone = torch.autograd.grad(sum((w * a).sum() for w, a in zip(weights, alone)), blocks)
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads_together, grads_alone))


def test_apply_each_refuses_what_it_cannot_replay():
    dsa = DSA()
    shared = dsa.draw((1, 3, H, W), gen(0), siamese=True)
    with pytest.raises(ValueError, match="one draw per block"):
        dsa.apply_each([images(2), images(3)], [shared])
    with pytest.raises(ValueError, match="siamese=True"):
        dsa.apply_each([images(2)], [dsa.draw((2, 3, H, W), gen(0))])


def test_per_sample_params_need_the_same_batch_size():
    dsa = DSA("rotate")
    params = dsa.draw((8, 3, H, W), gen(0))
    assert params.batch_size == 8 and not params.shared
    with pytest.raises(ValueError, match="siamese=True"):
        dsa.apply(images(5), params)
    with pytest.raises(ValueError, match="drawn for"):
        dsa.apply(images(8, size=16), params)


# --------------------------------------------------------------------------- per sample


@pytest.mark.parametrize("family", FAMILIES)
def test_per_sample_mode_gives_different_transforms(family):
    dsa = DSA(family)
    x = images(1, seed=7).repeat(8, 1, 1, 1)
    out = dsa(x, generator=gen(0))
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) >= 2
    params = dsa.draw(x.shape, gen(0))
    values = torch.cat(
        [v.reshape(8, -1).float() for _, p in params.ops for k, v in p.items() if k != "forward_input_shape"], 1
    )
    assert len({tuple(r.tolist()) for r in values}) >= 2


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("family", FAMILIES)
def test_gradients_flow_to_the_input(family):
    dsa = DSA(family)
    x = images(6, seed=8).requires_grad_(True)
    weights = torch.rand(6, 3, H, W, generator=gen(9))
    out = dsa(x, generator=gen(1))
    (out * weights).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    x.grad = None
    dsa(x, generator=gen(2)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_gradcheck_each_family(family):
    dsa = DSA(family)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=gen(10)).requires_grad_(True)
    params = dsa.draw(x.shape, gen(3))
    assert torch.autograd.gradcheck(lambda t: dsa.apply(t, params), (x,))


# --------------------------------------------------------------------------- DSA formulas


def _draw(family: str, x: torch.Tensor, seed: int = 5) -> tuple[DSA, DSAParams, torch.Tensor]:
    dsa = DSA(family)
    params = dsa.draw(x.shape, gen(seed))
    return dsa, params, dsa.apply(x, params)


def test_color_matches_dsa_formula():
    x = images(8, seed=11)
    _, params, out = _draw("color", x)
    assert [name for name, _ in params.ops] == ["brightness", "saturation", "contrast"]
    b = params["brightness"]["brightness"].view(-1, 1, 1, 1)
    s = params["saturation"]["saturation"].view(-1, 1, 1, 1)
    c = params["contrast"]["contrast"].view(-1, 1, 1, 1)
    assert ((b >= -0.5) & (b < 0.5)).all() and ((s >= 0) & (s < 2)).all() and ((c >= 0.5) & (c < 1.5)).all()
    ref = x + b
    m = ref.mean(dim=1, keepdim=True)
    ref = (ref - m) * s + m
    m = ref.mean(dim=(1, 2, 3), keepdim=True)
    ref = (ref - m) * c + m
    assert torch.equal(out, ref)
    assert out.min() < 0 and out.max() > 1  # no clamping


@pytest.mark.parametrize("op", ["brightness", "saturation", "contrast"])
def test_each_colour_op_alone_matches_dsa_formula(op):
    x = images(8, seed=12)
    aug = DSA("color").ops[op]
    torch.manual_seed(0)
    params = aug.forward_parameters(x.shape)
    out = aug(x, params=params)
    f = params[op].view(-1, 1, 1, 1)
    if op == "brightness":
        ref = x + f
    elif op == "saturation":
        m = x.mean(dim=1, keepdim=True)
        ref = (x - m) * f + m
    else:
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        ref = (x - m) * f + m
    assert torch.equal(out, ref)
    assert torch.equal(aug(x, params=params), out)  # Kornia replay


def test_flip_matches_dsa():
    x = images(16, seed=13)
    _, params, out = _draw("flip", x)
    flip = params["flip"]["batch_prob"] > 0.5
    assert 0 < flip.sum() < 16
    assert torch.equal(out, torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x))


def test_crop_matches_integer_translation_with_zero_fill():
    x = images(16, seed=14)
    _, params, out = _draw("crop", x)
    t = params["crop"]["translations"]
    assert torch.equal(t, t.round()) and t.abs().max() <= 4 and t.abs().max() > 0  # int(0.125 * 32 + 0.5) = 4
    pad = 4
    xp = F.pad(x, (pad, pad, pad, pad))
    ref = torch.stack(
        [xp[i, :, pad - int(dy) : pad - int(dy) + H, pad - int(dx) : pad - int(dx) + W] for i, (dx, dy) in enumerate(t)]
    )
    assert torch.equal(out, ref)


def _interior_close(out: torch.Tensor, ref: torch.Tensor, border: int = 1) -> None:
    torch.testing.assert_close(
        out[..., border:-border, border:-border], ref[..., border:-border, border:-border], rtol=0, atol=1e-4
    )
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-3)


def test_scale_matches_dsa_affine_grid():
    x = images(16, seed=15)
    _, params, out = _draw("scale", x)
    sx, sy = (1.0 / params["scale"]["scale"]).unbind(-1)  # Kornia's scale is the reciprocal of DSA's
    assert (sx >= 1 / 1.2 - 1e-6).all() and (sx <= 1.2 + 1e-6).all() and not torch.allclose(sx, sy)
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, zero], -1), torch.stack([zero, sy, zero], -1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    _interior_close(out, F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True))


def test_rotate_matches_dsa_affine_grid():
    x = images(16, seed=16)
    _, params, out = _draw("rotate", x)
    angle = params["rotate"]["angle"]
    assert (angle.abs() <= 15).all() and angle.abs().max() > 1
    a = angle * math.pi / 180  # DSA's theta is -a
    zero = torch.zeros_like(a)
    theta = torch.stack([torch.stack([a.cos(), a.sin(), zero], -1), torch.stack([-a.sin(), a.cos(), zero], -1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    _interior_close(out, F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True))


@pytest.mark.parametrize("size", [32, 30, 28])
def test_cutout_matches_clipped_zero_square(size):
    x = images(32, seed=17, size=size)
    _, params, out = _draw("cutout", x)
    side = int(0.5 * size + 0.5)  # DSA: a square of int(0.5 H + 0.5); centres in [0, H + (1 - side % 2))
    cy, cx = params["cutout"]["center_y"], params["cutout"]["center_x"]
    high = size + (1 - side % 2)
    assert cy.min() >= 0 and cy.max() < high and cx.min() >= 0 and cx.max() < high
    ref = x.clone()
    clipped = False
    for i in range(32):
        top, left = int(cy[i]) - side // 2, int(cx[i]) - side // 2
        ref[i, :, max(top, 0) : max(top + side, 0), max(left, 0) : max(left + side, 0)] = 0
        clipped |= top < 0 or left < 0 or top + side > size or left + side > size
    assert clipped  # some squares were partly outside the image
    assert torch.equal(out, ref)


def test_parameter_distributions_match_dsa():
    n, shape = 20000, (20000, 3, H, W)

    def one(family, op, key):
        return DSA(family).draw(shape, gen(21))[op][key].double()

    sx = 1.0 / one("scale", "scale", "scale")  # DSA's sx, sy ~ U[1/1.2, 1.2], independent
    lo, hi = 1 / 1.2, 1.2
    assert sx.min() >= lo - 1e-6 and sx.max() <= hi + 1e-6
    assert abs(sx.mean() - (lo + hi) / 2) < 0.004  # uniform in sx, not in Kornia's zoom 1/sx (mean 0.9945)
    assert abs(torch.corrcoef(sx.T)[0, 1]) < 0.05
    angle = one("rotate", "rotate", "angle")
    assert angle.min() >= -15 and angle.max() <= 15 and abs(angle.mean()) < 0.3 and abs(angle.var() - 75) < 3
    t = one("crop", "crop", "translations")
    assert set(t.flatten().tolist()) == set(range(-4, 5))
    centres = one("cutout", "cutout", "center_y")
    assert set(centres.tolist()) == set(range(0, H + 1))
    flips = one("flip", "flip", "batch_prob")
    assert abs(flips.mean() - 0.5) < 0.02
    b = one("color", "brightness", "brightness")
    assert b.min() >= -0.5 and b.max() < 0.5 and abs(b.mean()) < 0.01 and b.numel() == n


# --------------------------------------------------------------------------- seeding


def test_same_seed_same_output_different_seed_different():
    dsa = DSA(mode="all")
    x = images(8, seed=18)
    assert torch.equal(dsa(x, generator=gen(3)), dsa(x, generator=gen(3)))
    assert not torch.equal(dsa(x, generator=gen(3)), dsa(x, generator=gen(4)))
    a, b = dsa.siamese(x, x[:3], generator=gen(5))
    a2, b2 = dsa.siamese(x, x[:3], generator=gen(5))
    assert torch.equal(a, a2) and torch.equal(b, b2)
    one = DSA()
    outs = [one(x, generator=gen(s)) for s in range(6)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])
    # a sequence of calls on one generator is reproducible too
    g1, g2 = gen(6), gen(6)
    for _ in range(5):
        assert torch.equal(one(x, generator=g1), one(x, generator=g2))


def test_generator_leaves_global_rng_alone_and_global_seed_works():
    dsa = DSA(mode="all")
    x = images(4, seed=19)
    state = torch.get_rng_state()
    dsa(x, generator=gen(0))
    assert torch.equal(state, torch.get_rng_state())
    torch.manual_seed(123)
    first = dsa(x)
    torch.manual_seed(123)
    assert torch.equal(first, dsa(x))
    seeded = DSA(mode="all", generator=gen(7))
    assert torch.equal(seeded(x), dsa(x, generator=gen(7)))


def test_rejects_a_non_cpu_generator():
    dsa = DSA()
    cuda_like = types.SimpleNamespace(device=torch.device("cuda"))  # a CUDA generator's device, without CUDA
    with pytest.raises(ValueError, match="CPU"):
        dsa.draw((2, 3, H, W), cuda_like)


# --------------------------------------------------------------------------- families / strategy


def test_one_family_mode_picks_each_family_one_at_a_time():
    dsa = DSA()
    g = gen(0)
    seen = {}
    for _ in range(200):
        params = dsa.draw((2, 3, H, W), g, siamese=True)
        assert len(params.families) == 1
        family = params.families[0]
        assert [name for name, _ in params.ops] == list(FAMILY_OPS[family])
        seen[family] = seen.get(family, 0) + 1
    assert set(seen) == set(FAMILIES)
    assert min(seen.values()) > 15  # roughly uniform (expected 33 each)


def test_all_mode_applies_every_family_in_order():
    params = DSA(mode="all").draw((2, 3, H, W), gen(0))
    assert params.families == FAMILIES
    assert [name for name, _ in params.ops] == [op for f in FAMILIES for op in FAMILY_OPS[f]]


def test_strategy_parsing_and_errors():
    assert parse_strategy("color_crop_cutout_flip_scale_rotate") == FAMILIES
    assert parse_strategy("none") == () and parse_strategy("") == ()
    x = images(2)
    assert torch.equal(DSA("none")(x), x)
    with pytest.raises(ValueError) as err:
        DSA("color_blur_crop")
    message = str(err.value)
    assert "'blur'" in message and all(f in message for f in FAMILIES)
    with pytest.raises(ValueError, match="one_family"):
        DSA(mode="sometimes")


def test_lazy_package_import():
    import ddbench.augment as aug

    assert aug.DSA is DSA
    with pytest.raises(AttributeError):
        aug.NotAThing  # noqa: B018


# --------------------------------------------------------------------------- GPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_no_host_sync_and_same_as_cpu():
    dsa = DSA(mode="all").cuda()
    x = images(6, seed=20)
    xc = x.cuda().requires_grad_(True)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = dsa(xc, generator=gen(1))
        a, b = dsa.siamese(xc, xc[:2], generator=gen(2))
        (out.sum() + a.sum() + b.sum()).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.testing.assert_close(out.cpu(), dsa.cpu()(x, generator=gen(1)), rtol=0, atol=1e-4)
