"""The GPU path: auto precision and channels-last resolve per device, bfloat16 is refused off
CUDA, and on CUDA the verifier's training loop makes no host synchronisation inside an epoch."""

from __future__ import annotations

import pytest
import torch

from ddbench.settings.budget import BudgetError, resolve_budget


def test_auto_resolves_per_device_and_is_recorded_concretely():
    budget = resolve_budget("quick")
    assert (budget.precision, budget.channels_last) == ("auto", "auto")
    cpu = budget.resolve_for(torch.device("cpu"))
    assert (cpu.precision, cpu.channels_last) == ("fp32", "on") and cpu.describe()["precision"] == "fp32"
    assert resolve_budget("quick", ["channels_last=off"]).resolve_for(torch.device("cpu")).channels_last == "off"
    with pytest.raises(BudgetError, match="precision=bf16 .* is for CUDA devices"):
        resolve_budget("quick", ["precision=bf16"]).resolve_for(torch.device("cpu"))
    with pytest.raises(BudgetError, match="precision='fp8'"):
        resolve_budget("quick", ["precision=fp8"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_epoch_has_no_host_sync():
    from ddbench.evaluators.training import fit
    from ddbench.host.registry import get_architecture

    device = torch.device("cuda")
    budget = resolve_budget("quick", ["epochs=2", "batch_size=8", "augmentation=flip"]).resolve_for(device)
    model = get_architecture("convnet2").build(3, 4, 16).to(device)
    images, labels = torch.randn(32, 3, 16, 16, device=device), torch.arange(4, device=device).repeat(8)

    def loss(batch, net):
        return torch.nn.functional.cross_entropy(net(images[batch]), labels[batch])

    fit(model, 32, budget, loss, device)  # warm-up (cuDNN autotuning may sync)
    torch.cuda.synchronize()
    one_epoch = resolve_budget("quick", ["epochs=1", "batch_size=8", "augmentation=flip"]).resolve_for(device)
    # every step of the epoch runs with syncs forbidden; the progress call after the last step allows
    # them again, for the epoch's one finiteness check
    torch.cuda.set_sync_debug_mode("error")
    try:
        fit(model, 32, one_epoch, loss, device, progress=lambda steps: torch.cuda.set_sync_debug_mode("default"))
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_compile_is_opt_in_and_trains_through_dynamo(monkeypatch):
    """``compile=eager`` traces the verifier with Dynamo (no C++ compiler needed) and trains the
    same weights as no compile; ``off`` never calls torch.compile; an unknown backend is refused."""
    from ddbench.evaluators.training import fit
    from ddbench.host.registry import get_architecture

    calls = []
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: calls.append(kw) or real_compile(model, **kw))
    device = torch.device("cpu")
    images, labels = torch.randn(16, 3, 8, 8), torch.arange(4).repeat(4)

    def trained(compile_backend: str) -> torch.Tensor:
        torch.manual_seed(0)
        model = get_architecture("convnet1").build(3, 4, 8)
        budget = resolve_budget("quick", ["epochs=2", "batch_size=8", "augmentation=none", f"compile={compile_backend}"])
        fit(model, 16, budget.resolve_for(device),
            lambda batch, net: torch.nn.functional.cross_entropy(net(images[batch]), labels[batch]), device)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    plain = trained("off")
    assert calls == []
    traced = trained("eager")
    assert calls == [{"backend": "eager"}]
    assert torch.allclose(plain, traced, atol=1e-5)
    assert "compile" not in resolve_budget("quick").describe()  # off: keys and tables as before
    with pytest.raises(BudgetError, match="compile='fast'"):
        resolve_budget("quick", ["compile=fast"])
