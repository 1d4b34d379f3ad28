"""DM as a third-party plugin would be: the contract checker passes, and its defining step
lowers the embedding distance between synthetic and real images under random networks."""

from __future__ import annotations

import pytest
import torch

from baselines.dm import DMDistiller, DMOptions, embed, embedding_network, matching_loss
from ddbench.api import DistillTask
from ddbench.host.registry import get_architecture
from ddbench.testing import check_distiller, tiny_dataset


def test_dm_keeps_the_plugin_contract():
    check_distiller(DMDistiller(), options={"iterations": 3, "batch_real": 8},
                    bad_options={"iterations": -1, "lr": 0.0, "batch_real": 0, "init": "zeros", "dsa_strategy": "blur"})


def test_the_embedding_is_the_last_linear_layer_input_and_the_network_follows_the_paper():
    net = get_architecture("convnet2").build(3, 3, 16).eval()
    x = torch.randn(4, 3, 16, 16)
    features = embed(net, x)
    assert torch.allclose(net.classifier(features), net(x), atol=1e-5)
    assert embedding_network(DMOptions(), get_architecture("convnet3-bn")) == "convnet3"  # instance norm, as DM
    assert embedding_network(DMOptions(network="convnet2-bn"), get_architecture("convnet3-bn")) == "convnet2-bn"


def test_matching_lowers_the_embedding_distance_under_fresh_random_networks():
    dataset = tiny_dataset(per_class=24)
    arch = get_architecture("convnet2-bn")
    observer = arch.build(3, 3, 16).eval()

    def distance(images: torch.Tensor) -> float:  # 8 random networks the distillation never saw
        total = 0.0
        for seed in range(100, 108):
            torch.manual_seed(seed)
            net = get_architecture("convnet2").build(3, 3, 16).train()
            real = [dataset.train.load(torch.nonzero(dataset.train.labels == c).flatten()) for c in range(3)]
            syn = [images[c * 2:(c + 1) * 2] for c in range(3)]
            with torch.no_grad():
                total += float(matching_loss(net, real, syn))
        return total / 8

    def distilled(iterations: int) -> torch.Tensor:
        task = DistillTask(dataset=dataset, observer=observer, observer_arch=arch, ipc=2, device=torch.device("cpu"),
                           seed=0, options=DMOptions(iterations=iterations, batch_real=24, lr=1.0, dsa_strategy="none"))
        return DMDistiller().distill(task).images

    before, after = distance(distilled(0)), distance(distilled(30))
    assert after < 0.7 * before, (before, after)


def test_classes_share_forward_passes_only_where_that_changes_nothing_but_speed():
    from baselines.dm import CUDA_PIXELS_PER_PASS, class_means, embed_classes, images_per_pass

    torch.manual_seed(0)
    per_sample = get_architecture("convnet2").build(3, 3, 16).train()  # instance norm: no sample sees another
    batchnorm = get_architecture("convnet2-bn").build(3, 3, 16).train()
    cpu, cuda = torch.device("cpu"), torch.device("cuda")  # only the device's type is read
    assert images_per_pass(per_sample, (16, 16), cpu) == 1  # the CPU: a class per pass, its fastest
    assert images_per_pass(per_sample, (32, 32), cuda) == CUDA_PIXELS_PER_PASS // 1024 == 2560
    assert images_per_pass(per_sample, (224, 224), cuda) == 52
    assert images_per_pass(batchnorm, (16, 16), cpu) is None and images_per_pass(batchnorm, (16, 16), cuda) is None

    classes = [torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16), torch.randn(3, 3, 16, 16)]
    passes = []
    handle = per_sample.register_forward_pre_hook(lambda module, inputs: passes.append(len(inputs[0])))
    with torch.no_grad():
        split = {per_pass: embed_classes(per_sample, classes, per_pass) for per_pass in (1, 8, None)}
    handle.remove()
    assert passes == [4, 4, 3, 8, 3, 11]  # a class each; whole classes up to 8 images; all in one
    assert torch.allclose(split[1], split[8], atol=1e-5) and torch.allclose(split[1], split[None], atol=1e-5)

    # A BatchNorm network's statistics span every class, as in the reference code: one pass, whose
    # class means differ from those of a pass per class.
    with torch.no_grad():
        together = class_means(embed_classes(batchnorm, classes, images_per_pass(batchnorm, (16, 16), cpu)), [4, 4, 3])
        alone = class_means(embed_classes(batchnorm, classes, 1), [4, 4, 3])
        direct = torch.stack([block.mean(0) for block in embed(batchnorm, torch.cat(classes)).split([4, 4, 3])])
    assert torch.allclose(together, direct, atol=1e-6)
    assert not torch.allclose(together, alone, atol=1e-3)
    synthetic = [block[:1] for block in classes]
    assert torch.allclose(matching_loss(batchnorm, classes, synthetic), matching_loss(batchnorm, classes, synthetic, None))
    assert not torch.isclose(matching_loss(batchnorm, classes, synthetic), matching_loss(batchnorm, classes, synthetic, 1))


def _task(dataset, device, iterations, progress=lambda n: None):
    arch = get_architecture("convnet2-bn")
    observer = arch.build(3, 3, 16).eval().to(device)
    return DistillTask(dataset=dataset, observer=observer, observer_arch=arch, ipc=2, device=device, seed=0,
                       options=DMOptions(iterations=iterations, batch_real=16), progress=progress)


def test_real_images_resident_or_loaded_per_draw_are_the_same_images():
    from baselines.dm_state import RESIDENT_BYTES, RealPool

    dataset = tiny_dataset(per_class=24)
    task = _task(dataset, torch.device("cpu"), 1)
    pools = task.train_indices_by_class()
    loaded = RealPool(task, pools)
    assert not loaded.resident and loaded.where == "loaded each iteration"  # the CPU loads each draw
    resident = RealPool(task, pools)
    resident.resident = True  # as on CUDA, here on the CPU: the gather by offsets is the same code
    generator = torch.Generator().manual_seed(3)
    for _ in range(3):
        positions = [torch.randperm(len(pool), generator=generator)[:5] for pool in pools.values()]
        expected = [dataset.train.load(pool[chosen]) for pool, chosen in zip(pools.values(), positions)]
        for pool in (loaded, resident):
            assert all(torch.equal(a, b) for a, b in zip(pool.draw(positions), expected))
    assert resident.images is not None and len(resident.images) == sum(len(pool) for pool in pools.values())
    assert 50_000 * 3 * 32 * 32 * 4 <= RESIDENT_BYTES  # CIFAR-10 at 32 px stays on the GPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_dm_iterations_have_no_host_sync():
    dataset = tiny_dataset(per_class=24)
    iterations = 5

    def progress(done, seen=[0]):  # noqa: B006 (a counter across calls)
        seen[0] += done
        # the first iteration may initialise lazily; the rest must never wait for the GPU; the
        # distiller reads its loss trace once, after the last
        torch.cuda.set_sync_debug_mode("error" if seen[0] < iterations else "default")

    try:
        distilled = DMDistiller().distill(_task(dataset, torch.device("cuda"), iterations, progress))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert distilled.extras["real_images"] == "resident on cuda"
    assert torch.isfinite(distilled.images).all()


def test_a_stopped_run_goes_on_from_its_saved_state_to_the_same_images(tmp_path, monkeypatch):
    import baselines.dm_state as dm_state
    from ddbench.store.partials import PartialStore

    dataset = tiny_dataset(per_class=24)
    whole = DMDistiller().distill(_task(dataset, torch.device("cpu"), 6))

    monkeypatch.setattr(dm_state, "CHECKPOINT_SECONDS", 0.0)  # save after every iteration (60 s in real runs)
    store = PartialStore(tmp_path / "partial")

    class Stop(Exception):
        pass

    def stop_after_three(done, seen=[0]):  # noqa: B006 (a counter across calls)
        seen[0] += done
        if seen[0] > 3:
            raise Stop

    task = _task(dataset, torch.device("cpu"), 6, stop_after_three)
    task.partials = store
    with pytest.raises(Stop):
        DMDistiller().distill(task)
    assert store.finished() == [dm_state.STATE_PART]

    progress = []
    task = _task(dataset, torch.device("cpu"), 6, progress.append)
    task.partials = PartialStore(tmp_path / "partial")
    resumed = DMDistiller().distill(task)
    assert progress[0] == 3 and sum(progress) == 6  # three iterations done before, three now
    assert task.partials.resumed_units == 1 and task.partials.resumed_seconds > 0
    assert torch.equal(resumed.images, whole.images)  # as if it had never stopped
    assert resumed.extras["loss_trace"] == whole.extras["loss_trace"]
