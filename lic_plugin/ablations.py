"""LIC's own tables: the paper's Table 7 rows and Figure 1 sweeps (``ddbench ablate lic``), and
its Table 3 efficiency figures (``ddbench bench``), declared here so the host knows none of them.

- ``table7``: four runs, each adding one technique: ``original`` (random picks, plain squeeze,
  hard labels: selection=false, compensation=false, the ``train`` evaluator), ``+selection``
  (compensation=false, ``train``), ``+compensation`` (``train``) and ``+relabel`` (``relabel``).
- ``m``: M, the compensation iterations (``lic.iterations``), default 0, 50, 100, 200.
- ``n``: N, images squeezed into one distilled image (``lic.n``), default 1, 4, 9, 16; values
  whose tiles do not divide the image, or that need more images than a class has, are skipped.
- ``layer``: every feature layer the observer architecture names (``arch.feature_layers``); the
  default layer is passed as ``""`` so it shares the default run.
"""

from __future__ import annotations

from ddbench.api import Ablation, AblationPoint, AblationSetting, ReferenceFigure, check_tiles_fit

TABLE7 = (
    ("original", {"selection": "false", "compensation": "false"}, "train"),
    ("+selection", {"selection": "true", "compensation": "false"}, "train"),
    ("+compensation", {"selection": "true", "compensation": "true"}, "train"),
    ("+relabel", {"selection": "true", "compensation": "true"}, "relabel"),
)
DEFAULT_M = (0, 50, 100, 200)
DEFAULT_N = (1, 4, 9, 16)

PAPER_DEVICE = "paper (RTX 4090)"
# The paper's Table 3 (Tiny-ImageNet, 100 images at batch size 100, one RTX 4090): seconds, GB.
TABLE3 = {"Conv-4": (13.02, 0.65), "ResNet-18": (25.34, 1.56), "MobileNet-V2": (18.81, 0.64)}
PAPER_ARCH = {"convnet4": "Conv-4", "convnet4-bn": "Conv-4", "resnet18": "ResNet-18", "mobilenetv2": "MobileNet-V2"}


def table7(setting: AblationSetting):
    return [AblationPoint(label, label, dict(options), evaluator) for label, options, evaluator in TABLE7], []


def m_sweep(setting: AblationSetting):
    return [AblationPoint(f"M={m}", m, {"iterations": str(m)}) for m in (setting.values or DEFAULT_M)], []


def n_sweep(setting: AblationSetting):
    points, skipped = [], []
    _, height, width = setting.image_shape
    for n in setting.values or DEFAULT_N:
        try:
            check_tiles_fit(n, height, width)
        except ValueError as exc:
            skipped.append({"label": f"N={n}", "reason": str(exc)})
            continue
        if n * setting.ipc > setting.smallest_class:
            skipped.append({"label": f"N={n}", "reason": f"N x IPC = {n * setting.ipc} is more than the "
                                                          f"{setting.smallest_class} training images of the smallest class"})
            continue
        points.append(AblationPoint(f"N={n}", n, {"n": str(n)}))
    return points, skipped


def layer_sweep(setting: AblationSetting):
    arch = setting.arch
    if not arch.feature_layers:
        raise ValueError(f"architecture {arch.name!r} names no feature layers to sweep")
    return [AblationPoint(layer, layer, {"feature_layer": "" if layer == arch.default_feature_layer else layer})
            for layer in arch.feature_layers], []


ABLATIONS = {
    "table7": Ablation("Table 7", table7, plot="bars"),
    "m": Ablation("M (iterations)", m_sweep, xlabel="M: compensation iterations"),
    "n": Ablation("N (images per distilled image)", n_sweep, xlabel="N: images squeezed into one distilled image"),
    "layer": Ablation("feature layer", layer_sweep, plot="categorical", xlabel="feature alignment layer"),
}


def bench_reference(table: dict[str, tuple[float, float]], arch: str) -> ReferenceFigure | None:
    paper_arch = PAPER_ARCH.get(arch)
    if paper_arch not in table:
        return None
    seconds, gigabytes = table[paper_arch]
    return ReferenceFigure(PAPER_DEVICE, seconds, gigabytes, note="the paper's Table 3 (Tiny-ImageNet, GPU memory)",
                           extra={"architecture": paper_arch})
