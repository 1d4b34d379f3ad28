"""DM as a third-party plugin would be: the contract checker passes, and its defining step
lowers the embedding distance between synthetic and real images under random networks."""

from __future__ import annotations

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
