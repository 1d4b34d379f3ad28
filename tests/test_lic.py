"""LIC (lic_plugin): entry point, Stage 1 selection and grouping, Stage 2 compensation (Eq. 8),
feature layers of every architecture, seeding, the ablation switches and the contract checks.
Small synthetic data and tiny observers, CPU only."""

from __future__ import annotations

import math
import pytest
import torch
import torch.nn.functional as F

from ddbench.host import registry
from ddbench.augment.dsa import DSA
from ddbench.contracts import DistillTask
from ddbench.models.features import read_features
from ddbench.settings.options import OptionError, apply_overrides
from ddbench.runner import check_distilled
from ddbench.store.partials import unit_generator
from ddbench.tiles import as_tiles, expand, squeeze
from lic_plugin.compensation import alignment_loss, compensate, resolve_feature_layer
from lic_plugin.distiller import LICDistiller
from lic_plugin.options import LICOptions
from lic_plugin.selection import (crop_resized, draw_subset, embed_images, group_ranks, kmeans_assign, random_square_boxes,
                                  rank_diverse, rank_kept, score_and_embed, score_images)
from tests.conftest import make_dataset

CPU = torch.device("cpu")
LAYER = "features.block2.relu"  # convnet2's last block before its pooling


@pytest.fixture(scope="module")
def dataset():
    return make_dataset(num_classes=3, per_class=20, size=8)


def tiny_observer(frozen: bool = True, classes: int = 3):
    torch.manual_seed(0)
    model = registry.get_architecture("convnet2").build(1, classes, 8).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(not frozen)
    return model


def make_task(dataset, observer=None, ipc: int = 2, seed: int = 0, n: int | None = 4, **options) -> DistillTask:
    """A LIC task on ``dataset``. N is the paper's 4 by name: these classes are small, and unset
    N would be 1 wherever 4 x IPC is more than a third of a class (``n=None`` leaves it unset)."""
    arch = registry.get_architecture("convnet2")
    return DistillTask(dataset, observer if observer is not None else tiny_observer(), arch, ipc=ipc, device=CPU,
                       seed=seed, options=LICOptions(n=n, **options))


def ranked_sources(distilled, label: int, ipc: int, n: int = 4) -> list[int]:
    """Undo the spread grouping: rank r sits in image r % ipc, tile r // ipc."""
    grid = distilled.extras["source_indices"][str(label)]
    return [grid[r % ipc][r // ipc] for r in range(n * ipc)]


def brute_force_ce(observer, dataset, indices) -> dict[int, float]:
    """CE of each image on its own (one forward per image)."""
    with torch.no_grad():
        return {i: float(F.cross_entropy(observer(dataset.train.load(torch.tensor([i]))), dataset.train.labels[[i]]))
                for i in indices}


def test_plugin_found_through_entry_point():
    found = registry.registered("distillers")
    assert "lic" in found, "lic not registered; run pip install -e . so the entry point exists"
    assert found["lic"].plugin.name == "lic" and found["lic"].plugin.origin != "builtin"
    assert type(found["lic"].item).__module__ == "lic_plugin.distiller"
    assert found["lic"].item.options_class is LICOptions


def test_selection_keeps_exactly_the_lowest_loss_images(dataset):
    observer = tiny_observer()
    ipc = 2
    distilled = LICDistiller().distill(make_task(dataset, observer, ipc=ipc, subset_size=100, compensation=False,
                                                   diversity="none"))  # the paper's top scores
    for label, pool in dataset.train_indices_by_class().items():
        losses = brute_force_ce(observer, dataset, pool.tolist())
        expected = sorted(losses, key=lambda i: losses[i])[:4 * ipc]
        assert ranked_sources(distilled, label, ipc) == expected  # the set and its order
        kept_scores = distilled.extras["scores"][str(label)]
        for image, row in enumerate(distilled.extras["source_indices"][str(label)]):
            for tile, index in enumerate(row):
                assert kept_scores[image][tile] == pytest.approx(-losses[index], abs=1e-5)


def test_selection_on_a_seeded_subset_and_random_ablation(dataset):
    observer = tiny_observer()

    def kept(seed, selection):
        out = LICDistiller().distill(make_task(dataset, observer, seed=seed, subset_size=10, selection=selection,
                                               compensation=False, diversity="none" if selection else None))
        return out, {c: sorted(sum(out.extras["source_indices"][str(c)], [])) for c in range(3)}

    top0, top_sets = kept(0, True)
    again, _ = kept(0, True)
    assert top0.extras["scored_indices"] == again.extras["scored_indices"]
    other, _ = kept(1, True)
    assert other.extras["scored_indices"] != top0.extras["scored_indices"]
    rand0, rand_sets = kept(0, False)
    rand1, rand1_sets = kept(1, False)
    assert rand0.extras["scored_indices"] == top0.extras["scored_indices"]  # same subset, drawn first
    for label in range(3):
        subset = top0.extras["scored_indices"][str(label)]
        assert len(subset) == 10 and len(set(subset)) == 10
        losses = brute_force_ce(observer, dataset, subset)
        assert top_sets[label] == sorted(sorted(subset, key=lambda i: losses[i])[:8])
        assert set(rand_sets[label]) <= set(subset) and len(rand_sets[label]) == 8
        assert set(rand1_sets[label]) <= set(rand1.extras["scored_indices"][str(label)])
    assert rand_sets != top_sets and rand_sets != rand1_sets


def test_rank_and_group_functions():
    scores = torch.tensor([0.1, -3.0, 2.0, 0.5, -1.0])
    assert rank_kept(scores, 3).tolist() == [2, 3, 0]
    ranked = torch.arange(8)
    assert group_ranks(ranked, ipc=2, n=4, grouping="spread").tolist() == [[0, 2, 4, 6], [1, 3, 5, 7]]
    assert group_ranks(ranked, ipc=2, n=4, grouping="consecutive").tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert group_ranks(torch.arange(12), ipc=3, n=4).tolist() == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]]
    with pytest.raises(ValueError, match="cannot keep 6"):
        rank_kept(scores, 6)


def test_grouping_in_distill(dataset):
    observer = tiny_observer()
    spread = LICDistiller().distill(make_task(dataset, observer, subset_size=100, compensation=False))
    consecutive = LICDistiller().distill(make_task(dataset, observer, subset_size=100, compensation=False,
                                                   grouping="consecutive"))
    for label in range(3):
        ranks = ranked_sources(spread, label, ipc=2)
        assert consecutive.extras["source_indices"][str(label)] == [ranks[:4], ranks[4:]]
        flat = sum(consecutive.extras["scores"][str(label)], [])
        assert flat == sorted(flat, reverse=True)


def test_compensation_lowers_eq8_on_a_fixed_draw(dataset):
    observer = tiny_observer()
    originals = dataset.train.load(torch.arange(8))
    squeezed = squeeze(originals, 2)
    dsa = DSA()
    fixed = dsa.draw(originals.shape, torch.Generator().manual_seed(7), siamese=True)

    def fixed_loss(images):
        with torch.no_grad():
            return float(alignment_loss(observer, LAYER, dsa.apply(originals, fixed), dsa.apply(expand(images, 2), fixed)))

    low, high = (torch.tensor(b).view(1, -1, 1, 1) for b in dataset.normalization.pixel_bounds())
    out, trace = compensate(observer, LAYER, originals, squeezed, 2, dsa, torch.Generator().manual_seed(0),
                            iterations=40, bounds=(low, high))
    assert out.shape == squeezed.shape and trace.shape == (40,)
    assert fixed_loss(out) < 0.9 * fixed_loss(squeezed)
    # each iteration's loss is under its own draw, so compare the ends of the trace on average ...
    assert float(trace[-10:].mean()) < float(trace[:10].mean())
    assert bool((out >= low).all()) and bool((out <= high).all())
    # ... and exactly with the identity as the one fixed transform
    _, identity_trace = compensate(observer, LAYER, originals, squeezed, 2, DSA("none"), torch.Generator().manual_seed(0),
                                   iterations=10, bounds=(low, high))
    assert float(identity_trace[-1]) < float(identity_trace[0])


def test_feature_distances_are_the_documented_formulas():
    from lic_plugin.compensation import feature_distance

    a, b = torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]]), torch.tensor([[1.0, 0.0, 3.0], [0.0, 2.0, 0.0]])
    assert float(feature_distance(a, b, "mse")) == pytest.approx((4.0 + 1.0) / 2)  # ||a-b||^2 per pair, mean
    assert float(feature_distance(a, b, "l1")) == pytest.approx((2 / 3 + 1 / 3) / 2)  # mean |a-b| per pair, mean
    cos = F.cosine_similarity(a, b, dim=1)
    assert float(feature_distance(a, b, "cosine")) == pytest.approx(float((1 - cos).mean()))
    with pytest.raises(ValueError, match="mse, l1, cosine"):
        feature_distance(a, b, "huber")


@pytest.mark.parametrize("loss,optimizer,lr", [("l1", "adamw", 0.01), ("cosine", "adam", 0.1)])
def test_every_loss_and_optimizer_lowers_its_own_objective(dataset, loss, optimizer, lr):
    observer = tiny_observer()
    originals = dataset.train.load(torch.arange(8))
    squeezed = squeeze(originals, 2)
    _, trace = compensate(observer, LAYER, originals, squeezed, 2, DSA("none"), torch.Generator().manual_seed(0),
                          iterations=40, optimizer=optimizer, lr=lr, loss=loss)
    assert float(trace[-1]) < 0.9 * float(trace[0])


def test_selection_skip_keeps_a_band_below_the_top():
    scores = torch.tensor([0.9, 0.1, 0.8, 0.5, 0.7, 0.3, 0.6, 0.2, 0.4, 0.0])
    assert rank_kept(scores, 3).tolist() == [0, 2, 4]
    assert rank_kept(scores, 3, skip=2).tolist() == [4, 6, 3]  # ranks 3-5: 0.7, 0.6, 0.5
    assert rank_kept(scores, 3, skip=9).tolist() == [7, 1, 9]  # never past the end: the lowest three
    with pytest.raises(ValueError, match="selection_skip"):
        LICOptions(selection_skip=1.0)
    with pytest.raises(ValueError, match="mse, l1, cosine"):
        LICOptions(loss="huber")


def test_diverse_selection_takes_the_best_of_each_cluster():
    # two tight groups in feature space; every top score is in group A, so plain selection keeps
    # only A, while clusters keep the best of A and the best of B
    vectors = F.normalize(torch.tensor([[1.0, 0.0], [0.99, 0.05], [0.98, -0.05], [0.0, 1.0], [0.05, 0.99]]), dim=1)
    scores = torch.tensor([-0.1, -0.2, -0.3, -0.9, -0.5])
    assert rank_kept(scores, 2).tolist() == [0, 1]
    kept = rank_diverse(scores, vectors, 2, torch.Generator().manual_seed(0))
    assert kept.tolist() == [0, 4]  # rank order: best first
    # with a skip band the best of A is passed over
    assert rank_diverse(scores, vectors, 2, torch.Generator().manual_seed(0), skip=1).tolist() == [1, 4]
    with pytest.raises(ValueError, match="cannot keep"):
        rank_diverse(scores, vectors, 6, torch.Generator().manual_seed(0))


def test_medoid_selection_takes_the_member_nearest_each_cluster_mean():
    # two groups of three; in each the best-scored member is off-centre. Clusters keep each
    # group's best-scored member, medoids its most central one (here the worst-scored of B)
    vectors = F.normalize(torch.tensor([[1.0, 0.3], [0.95, 0.1], [1.0, 0.0],
                                        [0.0, 1.0], [0.2, 0.98], [-0.25, 0.97]]), dim=1)
    scores = torch.tensor([-0.1, -0.2, -0.3, -0.9, -0.5, -0.6])
    generator = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert rank_diverse(scores, vectors, 2, generator()).tolist() == [0, 4]
    central = [int(torch.argmin((group - group.mean(dim=0)).square().sum(dim=1))) for group in vectors.split(3)]
    assert central == [1, 0]  # members 1 and 3
    assert rank_diverse(scores, vectors, 2, generator(), pick="centre").tolist() == [1, 3]  # rank order
    with pytest.raises(ValueError, match="score, centre"):
        rank_diverse(scores, vectors, 2, generator(), pick="median")


def test_diversity_medoids_in_distill(dataset):
    observer = tiny_observer()
    task = lambda diversity: make_task(dataset, observer, ipc=2, iterations=0, diversity=diversity)  # noqa: E731
    medoids, clusters = LICDistiller().distill(task("medoids")), LICDistiller().distill(task("clusters"))
    check_distilled(medoids, "lic", dataset, 2)
    for label in range(3):
        scored = medoids.extras["scored_indices"][str(label)]
        kept = ranked_sources(medoids, label, ipc=2)
        assert len(set(kept)) == 8 and set(kept) <= set(scored)
    picks = [ranked_sources(result, label, ipc=2) for result in (medoids, clusters) for label in range(3)]
    assert picks[:3] != picks[3:]  # another image of some cluster


def test_kmeans_is_seeded_and_fills_every_pick():
    vectors = F.normalize(torch.randn(60, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    first = kmeans_assign(vectors, 12, torch.Generator().manual_seed(3))
    assert torch.equal(first, kmeans_assign(vectors, 12, torch.Generator().manual_seed(3)))
    # identical vectors make one cluster: the rest of the picks are the best remaining scores
    same = torch.ones(10, 4) / 2
    scores = torch.arange(10, dtype=torch.float32)
    kept = rank_diverse(scores, same, 4, torch.Generator().manual_seed(0))
    assert kept.tolist() == [9, 8, 7, 6]


def test_diversity_clusters_in_distill(dataset):
    observer = tiny_observer()
    distilled = LICDistiller().distill(make_task(dataset, observer, ipc=2, iterations=0, diversity="clusters"))
    check_distilled(distilled, "lic", dataset, 2)
    for label in range(3):
        scored = distilled.extras["scored_indices"][str(label)]
        kept = ranked_sources(distilled, label, ipc=2)
        assert len(set(kept)) == 8 and set(kept) <= set(scored)
        # each kept image is the best-scored member of its own k-means cluster
        images = dataset.train.load(torch.tensor(scored))
        vectors = embed_images(observer, LAYER, images)
        ce = brute_force_ce(observer, dataset, scored)
        order = torch.sort(torch.tensor([-ce[i] for i in scored]), descending=True, stable=True).indices
        assignment = kmeans_assign(vectors[order], 8, _class_generator(label))  # clustered in score order
        by_score = [scored[j] for j in order.tolist()]
        for index in kept:
            cluster = assignment[by_score.index(index)]
            members = [by_score[j] for j in (assignment == cluster).nonzero().flatten().tolist()]
            assert ce[index] <= min(ce[m] for m in members) + 1e-5
    with pytest.raises(ValueError, match="diversity=clusters picks among scored images"):
        LICOptions(diversity="clusters", selection=False)
    with pytest.raises(ValueError, match="diversity='spread'.*none, clusters, medoids"):
        LICOptions(diversity="spread")


def _class_generator(label: int) -> torch.Generator:
    """The selection generator of class ``label`` after its subset draw (as the distiller uses it)."""
    from ddbench.api import unit_generator
    from lic_plugin.selection import draw_subset

    generator = unit_generator(0, "lic-select", label)
    draw_subset(torch.arange(20), 300, generator)
    return generator



@pytest.mark.parametrize("arch", ["convnet2", "convnet2-bn"])
def test_chunked_compensation_gives_the_same_images(dataset, arch):
    """Gradients chunk by chunk (bounded memory) against all images at once: the same result."""
    torch.manual_seed(0)
    observer = registry.get_architecture(arch).build(1, 3, 8).eval()
    originals = dataset.train.load(torch.arange(24))
    squeezed = squeeze(originals, 2)
    low, high = (torch.tensor(b).view(1, -1, 1, 1) for b in dataset.normalization.pixel_bounds())

    def run(chunk):
        return compensate(observer, LAYER, originals, squeezed, 2, DSA(), torch.Generator().manual_seed(3),
                          iterations=15, bounds=(low, high), chunk=chunk)

    whole, whole_trace = run(0)
    for chunk in (1, 4, 5):
        chunked, trace = run(chunk)
        torch.testing.assert_close(chunked, whole, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(trace, whole_trace, atol=1e-4, rtol=1e-4)
    assert (whole - squeezed).abs().mean() > 1e-3  # compensation moved the images: the comparison means something


@pytest.mark.parametrize("option, value, default, bad, allowed", [
    ("dsa_draw", "pair", "batch", "image", "batch, pair"),
    ("tile_mixing", "cutmix", "none", "mixup", "none, cutmix"),
    ("lr_schedule", "cosine", "constant", "step", "constant, cosine"),
])
def test_a_compensation_other_than_the_default_is_chunk_invariant_and_gives_other_images(dataset, option, value, default,
                                                                                          bad, allowed):
    """Eq. 8's G varied, ``dsa_draw=pair`` (each original/tile pair its own transform) and
    ``tile_mixing=cutmix`` (a box from another tile of the same image), and its optimisation,
    ``lr_schedule=cosine``. Chunks replay their pairs' own draws and never mix images, so they
    give the same images; the images are not the default's; a value that is neither is refused."""
    torch.manual_seed(0)
    observer = registry.get_architecture("convnet2").build(1, 3, 8).eval()
    originals = dataset.train.load(torch.arange(24))
    squeezed = squeeze(originals, 2)

    def run(chunk, setting):
        return compensate(observer, LAYER, originals, squeezed, 2, DSA(mode="all"), torch.Generator().manual_seed(3),
                          iterations=6, chunk=chunk, **{option: setting})

    whole, whole_trace = run(0, value)
    chunked, trace = run(4, value)
    torch.testing.assert_close(chunked, whole, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(trace, whole_trace, atol=1e-4, rtol=1e-4)
    plain, _ = run(0, default)
    assert (plain - whole).abs().max() > 1e-3  # another objective: other images
    with pytest.raises(ValueError, match=f"use one of {allowed}"):
        run(0, bad)
    with pytest.raises(ValueError, match=f"lic option {option}='{bad}'"):
        LICOptions(**{option: bad})


def test_the_cosine_schedule_takes_delta_x_from_lr_down_to_zero_over_m_steps():
    from lic_plugin.compensation import make_schedule

    def lrs(name, steps=4):
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        schedule, seen = make_schedule(name, optimizer, steps), []
        for _ in range(steps + 1):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.step()
        return seen

    assert lrs("constant") == pytest.approx([0.1] * 5)
    assert lrs("cosine") == pytest.approx([0.05 * (1 + math.cos(math.pi * m / 4)) for m in range(5)])
    assert lrs("cosine")[-1] == pytest.approx(0.0)  # after the M-th step nothing would move


def test_tile_cutmix_pastes_a_box_from_a_tile_of_the_same_image_only():
    """``tile_mixing=cutmix``: the box of each view comes from its partner tile of the same
    distilled image (never from another image); outside the box nothing changes."""
    from ddbench.api import paste_box
    from lic_plugin.compensation import draw_tile_cutmix, tile_sources

    tiles, count = 4, 3
    views = torch.arange(count * tiles, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 2, 8, 8).clone()
    partner, box = draw_tile_cutmix(2, 8, 8, torch.Generator().manual_seed(1))
    assert sorted(partner.tolist()) == list(range(tiles))
    top, bottom, left, right = box
    assert 0 <= top <= bottom <= 8 and 0 <= left <= right <= 8
    mixed = paste_box(views, tile_sources(partner, count, tiles), box)
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[top:bottom, left:right] = True
    for view in range(count * tiles):
        image, tile = divmod(view, tiles)
        torch.testing.assert_close(mixed[view][:, inside], torch.full_like(mixed[view][:, inside], image * tiles + partner[tile]))
        torch.testing.assert_close(mixed[view][:, ~inside], views[view][:, ~inside])
    # across draws the box is sometimes non-empty and partners sometimes differ from the tile itself
    draws = [draw_tile_cutmix(2, 8, 8, torch.Generator().manual_seed(s)) for s in range(20)]
    assert any(b[1] > b[0] and b[3] > b[2] for _, b in draws)
    assert any((p != torch.arange(tiles)).any() for p, _ in draws)


def test_the_automatic_chunk_fits_a_memory_budget(dataset):
    from lic_plugin.compensation import activation_bytes_per_image, automatic_chunk

    observer = tiny_observer()
    per_image = activation_bytes_per_image(observer, LAYER, (1, 8, 8), 2, CPU)
    assert per_image > 4 * 128 * 8 * 8 * 4  # at least the first conv's output for 4 tiles
    chunk = automatic_chunk(observer, LAYER, (1, 8, 8), 2, CPU, count=10 ** 9)
    assert 1 <= chunk and chunk * per_image <= 256 * 2 ** 20 < (chunk + 1) * per_image
    assert automatic_chunk(observer, LAYER, (1, 8, 8), 2, CPU, count=7) == 7


ARCH_SHAPES = {  # 16 px, 1 channel: default feature layer, then one explicit non-default layer
    "convnet3": ((128, 2, 2), "features.block1.relu", (128, 16, 16)),
    "convnet3-bn": ((128, 2, 2), "features.block3.relu", (128, 4, 4)),
    "resnet18": ((512, 2, 2), "layer2", (128, 8, 8)),
    "mobilenetv2": ((1280, 2, 2), "features.6", (32, 8, 8)),
}


@pytest.mark.parametrize("name", sorted(ARCH_SHAPES))
def test_feature_layer_of_each_architecture(name):
    arch = registry.get_architecture(name)
    model = arch.build(1, 10, 16).eval()
    x = torch.randn(2, 1, 16, 16)
    default_shape, other, other_shape = ARCH_SHAPES[name]
    layer = resolve_feature_layer(arch, model, "")
    assert layer == arch.default_feature_layer
    with torch.no_grad():
        assert tuple(read_features(model, layer, x).shape) == (2, *default_shape)
        assert resolve_feature_layer(arch, model, other) == other
        assert tuple(read_features(model, other, x).shape) == (2, *other_shape)
        # the logits layer works too (2-D features)
        assert alignment_loss(model, arch.feature_layers[-1], x, x).shape == ()
    with pytest.raises(ValueError, match=f"valid feature layers: {arch.feature_layers[0]}"):
        resolve_feature_layer(arch, model, "no.such.layer")


def test_several_layers_are_aligned_together_each_weighing_the_same_per_feature(dataset):
    from lic_plugin.compensation import feature_distance

    arch = registry.get_architecture("convnet2")
    observer = tiny_observer()
    # resolved in forward order, each once, whatever order they were given in
    assert resolve_feature_layer(arch, observer, "features.block2.relu+features.block1.relu+features.block2.relu") == \
        "features.block1.relu+features.block2.relu"
    with pytest.raises(ValueError, match="'block9' is not a layer"):
        resolve_feature_layer(arch, observer, "features.block1.relu+block9")
    originals = dataset.train.load(torch.arange(8))
    expanded = expand(squeeze(originals, 2), 2)
    both = "features.block1.relu+features.block2.relu"
    with torch.no_grad():
        one, two = (read_features(observer, layer, originals) for layer in both.split("+"))
        one_hat, two_hat = (read_features(observer, layer, expanded) for layer in both.split("+"))
        scale = two[0].numel() / one[0].numel()  # block1's squared distance counted per block2 feature
        for loss, weight in (("mse", scale), ("l1", 1.0), ("cosine", 1.0)):
            expected = weight * feature_distance(one_hat, one, loss) + feature_distance(two_hat, two, loss)
            assert float(alignment_loss(observer, both, originals, expanded, loss)) == pytest.approx(float(expected))
        # one layer: Eq. 8 as before
        assert float(alignment_loss(observer, LAYER, originals, expanded)) == pytest.approx(
            float(feature_distance(two_hat, two, "mse")))
    distilled = LICDistiller().distill(make_task(dataset, observer, ipc=1, iterations=3,
                                                 feature_layer="features.block2.relu+features.block1.relu"))
    assert distilled.extras["feature_layer"] == both
    trace = distilled.extras["loss_trace"][0]["loss"]
    assert len(trace) == 3 and all(value > 0 for value in trace)


def test_named_module_layer_accepted_and_recorded(dataset):
    distilled = LICDistiller().distill(make_task(dataset, ipc=1, iterations=2, feature_layer="features.block1.conv"))
    assert distilled.extras["feature_layer"] == "features.block1.conv"
    with pytest.raises(ValueError, match="features.block1.relu, features.block2.relu, features.block2.pool, classifier"):
        LICDistiller().distill(make_task(dataset, ipc=1, iterations=2, feature_layer="block9"))


def test_same_seed_bit_identical_other_seed_differs(dataset):
    observer = tiny_observer()
    first = LICDistiller().distill(make_task(dataset, observer, iterations=5, subset_size=10))
    again = LICDistiller().distill(make_task(dataset, observer, iterations=5, subset_size=10))
    other = LICDistiller().distill(make_task(dataset, observer, seed=1, iterations=5, subset_size=10))
    assert torch.equal(first.images, again.images)
    assert first.extras["loss_trace"] == again.extras["loss_trace"]
    assert not torch.equal(first.images, other.images)


def test_plain_squeeze_without_compensation(dataset):
    distilled = LICDistiller().distill(make_task(dataset, ipc=3, compensation=False))
    check_distilled(distilled, "lic", dataset, 3)
    assert distilled.images.shape == (9, 1, 8, 8) and distilled.images.dtype == torch.float32
    assert distilled.images.device == CPU
    assert distilled.labels.dtype == torch.int64 and distilled.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert distilled.tile_grid == 2 and distilled.soft_labels == "observer"
    assert distilled.images_per_class(3) == [3, 3, 3]
    assert distilled.extras["loss_trace"] == []
    sources = torch.tensor([distilled.extras["source_indices"][str(c)] for c in range(3)]).view(-1)
    assert all(int(dataset.train.labels[i]) == label for i, label in zip(sources, torch.arange(3).repeat_interleave(12)))
    assert torch.equal(distilled.images, squeeze(dataset.train.load(sources), 2))


def test_squeeze_mode_nearest_squeezes_the_same_sources_one_pixel_per_block(dataset):
    plain = LICDistiller().distill(make_task(dataset, ipc=3, compensation=False))
    nearest = LICDistiller().distill(make_task(dataset, ipc=3, compensation=False, squeeze_mode="nearest"))
    assert nearest.extras["source_indices"] == plain.extras["source_indices"]
    sources = torch.tensor([nearest.extras["source_indices"][str(c)] for c in range(3)]).view(-1)
    assert torch.equal(nearest.images, squeeze(dataset.train.load(sources), 2, "nearest"))
    assert not torch.equal(nearest.images, plain.images) and nearest.options["squeeze_mode"] == "nearest"
    with pytest.raises(ValueError, match="squeeze_mode='area': use one of bilinear, nearest"):
        LICOptions(squeeze_mode="area")


def test_compensated_set_contract_bounds_batches_and_progress(dataset):
    observer = tiny_observer(frozen=False)  # weights that could take grads: none may get one
    before = [p.detach().clone() for p in observer.parameters()]
    observer.train()
    task = make_task(dataset, observer, iterations=3, batch_size=4)
    calls = []
    task.progress = calls.append
    distilled = LICDistiller().distill(task)
    check_distilled(distilled, "lic", dataset, 2)
    assert sum(calls) == LICDistiller().total_work(task) == 3 + 2 * 3  # 6 images in batches of 4
    assert [b["images"] for b in distilled.extras["loss_trace"]] == [[0, 4], [4, 6]]
    assert all(isinstance(v, float) for b in distilled.extras["loss_trace"] for v in b["loss"])
    assert all(p.grad is None for p in observer.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, observer.parameters()))
    assert observer.training  # mode restored
    low, high = (torch.tensor(b).view(1, -1, 1, 1) for b in dataset.normalization.pixel_bounds())
    assert bool((distilled.images >= low).all()) and bool((distilled.images <= high).all())
    assert distilled.extras["feature_layer"] == "features.block2.pool" and distilled.extras["options"]["lr"] == LICOptions().lr
    unclamped = LICDistiller().distill(make_task(dataset, observer, iterations=3, clamp="none", lr=1.0))
    assert bool((unclamped.images < low).any() | (unclamped.images > high).any())


def test_refusals(dataset):
    with pytest.raises(ValueError, match="CUDA"):
        LICDistiller().distill(make_task(dataset, amp=True))
    with pytest.raises(ValueError, match=r"class 0 \('c0'\).*only 20"):
        LICDistiller().distill(make_task(dataset, ipc=6))
    with pytest.raises(ValueError, match="perfect square"):
        LICOptions(n=3)
    with pytest.raises(ValueError, match="spread, consecutive"):
        LICOptions(grouping="best")
    with pytest.raises(ValueError, match="adam, adamw, sgd"):
        LICOptions(optimizer="lbfgs")
    with pytest.raises(ValueError, match="pixel, none"):
        LICOptions(clamp="yes")
    with pytest.raises(ValueError, match="iterations"):
        LICOptions(iterations=-1)
    with pytest.raises(ValueError, match="subset_size"):
        LICOptions(subset_size=0)
    with pytest.raises(ValueError, match="valid families"):
        LICOptions(dsa_strategy="color_blur")
    with pytest.raises(ValueError, match="under 2 px"):
        LICDistiller().distill(make_task(dataset, n=25))
    with pytest.raises(ValueError, match="original, tile"):
        LICOptions(score_view="squeezed")
    with pytest.raises(ValueError, match="crops=0"):
        LICOptions(crops=0)
    with pytest.raises(ValueError, match=r"crop_scale=0.0.*\(0, 1\]"):
        LICOptions(crop_scale=0.0)
    with pytest.raises(ValueError, match="crops=1 with selection=false"):
        LICOptions(crops=3, selection=False, diversity="none")


def test_command_line_options_reach_the_dataclass():
    options = apply_overrides(LICOptions(), ["selection=false", "compensation=false", "lr=0.5", "grouping=consecutive"],
                              what="method 'lic'")
    assert (options.selection, options.compensation, options.lr, options.grouping) == (False, False, 0.5, "consecutive")
    with pytest.raises((OptionError, ValueError)):
        apply_overrides(LICOptions(), ["n=5"], what="method 'lic'")


def test_score_images_is_negative_cross_entropy(dataset):
    observer = tiny_observer()
    images = dataset.train.load(torch.arange(10))
    labels = dataset.train.labels[:10]
    with torch.no_grad():
        expected = -F.cross_entropy(observer(images), labels, reduction="none")
    torch.testing.assert_close(score_images(observer, images, labels, batch_size=3), expected)


def test_clusters_score_and_embed_in_one_forward_pass(dataset):
    observer = tiny_observer()
    images = dataset.train.load(torch.arange(10))
    labels = dataset.train.labels[:10]
    passes = []
    handle = observer.register_forward_pre_hook(lambda module, inputs: passes.append(len(inputs[0])))
    try:
        scores, vectors = score_and_embed(observer, LAYER, images, labels, batch_size=4)
    finally:
        handle.remove()
    assert passes == [4, 4, 2], "one forward per batch gives both the scores and the vectors"
    torch.testing.assert_close(scores, score_images(observer, images, labels, batch_size=4))
    torch.testing.assert_close(vectors, embed_images(observer, LAYER, images, batch_size=4))
    assert vectors.device.type == "cpu" and vectors.shape[0] == 10


@pytest.mark.parametrize("embed", [
    lambda observer, images, labels: score_and_embed(observer, LAYER, images, labels, batch_size=4),
    lambda observer, images, labels: embed_images(observer, LAYER, images, batch_size=4),
], ids=["score_and_embed", "embed_images"])
def test_embedding_copies_to_the_host_once_not_per_batch(dataset, monkeypatch, embed):
    # On CUDA each copy to the CPU waits for the device: one copy after the last of three batches.
    observer = tiny_observer()
    images = dataset.train.load(torch.arange(10))
    labels = dataset.train.labels[:10]
    copies = []
    to_cpu = torch.Tensor.cpu
    monkeypatch.setattr(torch.Tensor, "cpu", lambda tensor, *args, **kwargs: copies.append(tuple(tensor.shape))
                        or to_cpu(tensor, *args, **kwargs))
    embed(observer, images, labels)
    assert len(copies) == 1, f"copied to the host {len(copies)} times for three batches: {copies}"
    assert copies[0][0] == 10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_loop_has_no_host_sync_and_amp_runs(dataset):
    device = torch.device("cuda")
    observer = tiny_observer().to(device)
    originals = dataset.train.load(torch.arange(8)).to(device)
    squeezed = squeeze(originals, 2)
    low, high = (torch.tensor(b, device=device).view(1, -1, 1, 1) for b in dataset.normalization.pixel_bounds())
    generator = torch.Generator().manual_seed(0)
    compensate(observer, LAYER, originals, squeezed, 2, DSA(), generator, iterations=2, bounds=(low, high))  # warm-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out, trace = compensate(observer, LAYER, originals, squeezed, 2, DSA(), generator, iterations=5,
                                bounds=(low, high), amp=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.dtype == torch.float32 and bool(torch.isfinite(trace).all())


def test_m_is_resolved_per_dataset_and_a_given_m_wins():
    distiller = LICDistiller()
    assert LICOptions().iterations is None  # unset: the dataset decides
    assert distiller.resolve_options(LICOptions(), "digits").iterations == 50
    assert distiller.resolve_options(LICOptions(), "imagefolder").iterations == 200  # the paper's M
    assert distiller.resolve_options(LICOptions(), "fashion-mnist").iterations == 200
    assert distiller.resolve_options(LICOptions(iterations=7), "digits").iterations == 7
    # the host records the resolved value: a run's plan holds M, not None
    from ddbench.runner import RunConfig, plan_run

    plan = plan_run(RunConfig(methods=["lic"], ipc=1, seeds=[0]))
    assert plan.method_options["lic"].iterations == 50


def test_diversity_defaults_to_clusters_with_selection_and_none_without():
    assert LICOptions().for_dataset("imagefolder").diversity == "clusters"
    assert LICOptions(selection=False).for_dataset("imagefolder").diversity == "none"
    assert LICOptions(diversity="none").for_dataset("imagefolder").diversity == "none"
    # what a run records and keys: the explicit value and the default resolve alike
    assert LICOptions().for_dataset("digits") == LICOptions(diversity="clusters").for_dataset("digits")


def test_n_follows_the_image_side_unless_given_and_n_1_compensates_nothing():
    from lic_plugin.options import default_n

    assert LICOptions().n is None  # unset: the image side decides
    assert [default_n(side) for side in (8, 16, 28, 32, 63, 64, 96, 127, 128, 224)] == [4] * 5 + [1] * 3 + [4] * 2
    at_32, at_64 = LICOptions().for_dataset("imagefolder", 32), LICOptions().for_dataset("imagefolder", 64)
    assert (at_32.n, at_32.iterations) == (4, 200) and (at_64.n, at_64.iterations) == (1, 0)
    given = LICOptions(n=4).for_dataset("imagefolder", 64)
    assert (given.n, given.iterations) == (4, 200)  # a given N wins, and M follows it
    assert LICOptions(n=1, iterations=50).for_dataset("imagefolder", 32).iterations == 0  # nothing to compensate
    assert LICOptions().for_dataset("imagefolder").n is None  # a plan without the image side leaves N to the run


def test_n_is_1_where_four_times_the_ipc_is_more_than_a_third_of_the_smallest_class(dataset):
    from lic_plugin.options import default_n

    # tiny-imagenet-10 (500 a class, 450 on the validation split), the digits (139 in the smallest
    # class), ImageNet-1K at IPC 100 (1,300 a class), CIFAR-10 at IPC 50 (5,000 a class)
    assert [default_n(32, 10, 500), default_n(32, 41, 500), default_n(32, 42, 500), default_n(32, 50, 450)] == [4, 4, 1, 1]
    assert [default_n(16, 10, 139), default_n(224, 100, 1300), default_n(32, 50, 5000)] == [4, 4, 4]
    assert default_n(64, 1, 10**6) == 1 and default_n(32) == 4  # the side still decides; without a class size, it alone
    assert LICOptions(n=4).for_dataset("imagefolder", 32, ipc=50, class_images=500).n == 4  # a given N wins
    # a run: 20 training images a class here, so IPC 1 squeezes 4 of them and IPC 2 would take 8 (more than 20 / 3)
    squeezed = LICDistiller().distill(make_task(dataset, ipc=1, n=None, compensation=False))
    whole = LICDistiller().distill(make_task(dataset, ipc=2, n=None))
    assert squeezed.tile_grid == 2 and squeezed.options["n"] == 4
    assert whole.tile_grid == 1 and (whole.options["n"], whole.options["iterations"]) == (1, 0)
    sources = [row[0] for label in range(3) for row in whole.extras["source_indices"][str(label)]]
    assert torch.equal(whole.images, dataset.train.load(torch.tensor(sources)))  # the selected images as they are
    # a validation split takes the N of the run it stands for: 11 images a class are left to train on, 20 decide
    held_out = LICDistiller().distill(make_task(dataset.with_validation_split(9, 0), ipc=1, n=None, compensation=False))
    assert held_out.tile_grid == 2 and held_out.options["n"] == 4


def test_distilling_64_px_images_keeps_whole_real_images_unless_n_is_given():
    dataset = make_dataset(num_classes=3, per_class=8, size=64)
    torch.manual_seed(0)
    observer = registry.get_architecture("convnet2").build(1, 3, 64).eval().requires_grad_(False)
    whole = LICDistiller().distill(make_task(dataset, observer, ipc=1, subset_size=8, n=None))
    assert whole.tile_grid == 1 and whole.options["n"] == 1 and whole.options["iterations"] == 0
    sources = [whole.extras["source_indices"][str(label)][0][0] for label in range(3)]
    assert torch.equal(whole.images, dataset.train.load(torch.tensor(sources)))  # the selected images as they are
    assert whole.extras["loss_trace"] == []
    squeezed = LICDistiller().distill(make_task(dataset, observer, ipc=1, subset_size=8, n=4, iterations=2))
    assert squeezed.tile_grid == 2 and squeezed.options["n"] == 4 and len(squeezed.extras["loss_trace"]) == 1


def test_nine_tiles_of_an_8_px_image_are_cut_unevenly_and_compensated(dataset):
    # 8 px in three: cells of 2, 3 and 3 px (the paper ran N = 9 at 32 px, which 3 does not divide either)
    observer = tiny_observer()
    plain = LICDistiller().distill(make_task(dataset, observer, ipc=1, subset_size=20, n=9, compensation=False))
    assert plain.tile_grid == 3 and plain.images.shape == (3, 1, 8, 8)
    for label in range(3):
        sources = torch.tensor(plain.extras["source_indices"][str(label)][0])
        torch.testing.assert_close(plain.images[label], squeeze(dataset.train.load(sources), 3)[0])
    compensated = LICDistiller().distill(make_task(dataset, observer, ipc=1, subset_size=20, n=9, iterations=3))
    trace = compensated.extras["loss_trace"][0]["loss"]
    assert compensated.tile_grid == 3 and len(trace) == 3 and all(math.isfinite(v) and v > 0 for v in trace)
    assert not torch.allclose(compensated.images, plain.images)  # Delta-x moved the squeezed pixels


def test_as_tiles_is_squeeze_then_expand_image_by_image():
    images = torch.rand(7, 3, 8, 8)  # 7: not a multiple of N, which squeeze would refuse
    first_four = expand(squeeze(images[:4], 2), 2)
    torch.testing.assert_close(as_tiles(images, 2)[:4], first_four)
    assert as_tiles(images, 2).shape == images.shape
    assert as_tiles(images, 1) is images
    assert not torch.allclose(as_tiles(images, 2), images)  # an 8 px image loses detail as a 4 px tile


def test_score_view_tile_scores_the_images_as_the_distilled_set_shows_them(dataset):
    observer = tiny_observer()
    distilled = LICDistiller().distill(make_task(dataset, observer, subset_size=100, compensation=False,
                                                   diversity="none", score_view="tile"))
    by_tile = {}
    for label, pool in dataset.train_indices_by_class().items():
        views = as_tiles(dataset.train.load(pool), 2)
        losses = F.cross_entropy(observer(views), torch.full((len(pool),), label), reduction="none")
        order = torch.sort(losses, stable=True).indices[:8]
        by_tile[label] = pool[order].tolist()
        assert ranked_sources(distilled, label, 2) == by_tile[label]
        kept = torch.tensor(distilled.extras["scores"][str(label)]).T.reshape(-1)  # spread: tile-major = rank order
        torch.testing.assert_close(kept, -losses[order].detach(), atol=1e-5, rtol=0)
    original = LICDistiller().distill(make_task(dataset, observer, subset_size=100, compensation=False, diversity="none"))
    assert any(ranked_sources(original, c, 2) != by_tile[c] for c in range(3))  # the view changes what is kept


def test_random_square_boxes_follow_randomresizedcrop_with_aspect_one():
    boxes = random_square_boxes(2000, 5, 0.25, 32, 32, torch.Generator().manual_seed(0))
    assert boxes.shape == (2000, 5, 4)
    left, top, width, height = boxes.unbind(dim=-1)
    area = width * height
    assert torch.equal(width, height)  # square in pixels on a square image
    assert float(area.min()) >= 0.25 - 1e-6 and float(area.max()) <= 1.0
    assert 0.55 < float(area.mean()) < 0.70  # uniform on [0.25, 1]: mean 0.625
    assert float(left.min()) >= 0 and float((left + width).max()) <= 1 + 1e-6
    assert float(top.min()) >= 0 and float((top + height).max()) <= 1 + 1e-6
    wide = random_square_boxes(100, 2, 0.5, 16, 32, torch.Generator().manual_seed(0))
    assert torch.allclose(wide[..., 3] * 16, wide[..., 2] * 32)  # square in pixels on a 16 x 32 image
    assert torch.equal(boxes, random_square_boxes(2000, 5, 0.25, 32, 32, torch.Generator().manual_seed(0)))


def test_crop_resized_cuts_the_box_out_and_resizes_it():
    images = torch.rand(2, 3, 8, 8)
    assert torch.equal(crop_resized(images, torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2)), images)
    # the top-right quarter, doubled: every output pixel of a 2x nearest-neighbour grid point lands
    # on the quarter's own pixels, so the inner rows and columns equal bilinear upsampling of it
    quarter = crop_resized(images, torch.tensor([[0.5, 0.0, 0.5, 0.5]] * 2))
    reference = F.interpolate(images[:, :, :4, 4:], size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(quarter[:, :, 1:7, 1:7], reference[:, :, 1:7, 1:7])


def test_crops_keep_each_images_best_crop_and_compensate_it(dataset):
    observer = tiny_observer()
    distilled = LICDistiller().distill(make_task(dataset, observer, subset_size=100, compensation=False,
                                                   diversity="none", crops=3, crop_scale=0.3))
    for label in range(3):
        sources = torch.tensor(distilled.extras["source_indices"][str(label)])  # [IPC, N]
        boxes = torch.tensor(distilled.extras["crops"][str(label)])  # [IPC, N, 4]
        assert boxes.shape == (2, 4, 4)
        crops = crop_resized(dataset.train.load(sources.reshape(-1)), boxes.reshape(-1, 4))
        images = distilled.images[distilled.labels == label]
        torch.testing.assert_close(images, squeeze(crops, 2))  # the kept crops, squeezed
        with torch.no_grad():
            scores = -F.cross_entropy(observer(crops), torch.full((len(crops),), label), reduction="none")
        torch.testing.assert_close(scores, torch.tensor(distilled.extras["scores"][str(label)]).reshape(-1),
                                   atol=1e-5, rtol=0)
    # each kept crop is its image's best of the three drawn from the class's generator after the subset
    generator = unit_generator(0, "lic-select", 0)
    subset = draw_subset(dataset.train_indices_by_class()[0], 100, generator)
    drawn = random_square_boxes(len(subset), 3, 0.3, 8, 8, generator)
    kept = torch.tensor(distilled.extras["source_indices"]["0"]).reshape(-1)
    position = [subset.tolist().index(int(i)) for i in kept]
    with torch.no_grad():
        every = torch.stack([-F.cross_entropy(observer(crop_resized(dataset.train.load(kept), drawn[position, view])),
                                              torch.zeros(len(kept), dtype=torch.int64), reduction="none")
                             for view in range(3)])
    torch.testing.assert_close(every.max(dim=0).values, torch.tensor(distilled.extras["scores"]["0"]).reshape(-1),
                               atol=1e-5, rtol=0)
    assert bool((every.max(dim=0).values > every.min(dim=0).values).all())  # the crops differ, so the pick matters
    whole = LICDistiller().distill(make_task(dataset, observer, subset_size=100, compensation=False, diversity="none"))
    assert whole.extras["crops"] == {}
    compensated = LICDistiller().distill(make_task(dataset, observer, subset_size=100, iterations=2, crops=3,
                                                     crop_scale=0.3, diversity="clusters"))
    assert compensated.extras["crops"].keys() == {"0", "1", "2"}
    assert not torch.equal(compensated.images, distilled.images)
