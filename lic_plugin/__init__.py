"""LIC: near-Lossless Information Compression for dataset distillation.

Sun, Shi, Shang and Lin, "Information Compensation: A Fix for Any-scale Dataset
Distillation" (TMLR; OpenReview 2SnmKd1JK4). The paper's code is not public; this plugin
is written from the paper (Section 2, Algorithm 1) and is the reference implementation
of the benchmark. Every choice the paper leaves open is an option with a default
(:class:`lic_plugin.options.LICOptions`), recorded with each run.

Stages (Algorithm 1):

1. selection (:mod:`lic_plugin.selection`): score a seeded random subset of each class by
   ``s_i = -CE(observer(x_i), y_i)`` (Eq. 1) and keep the top ``N x IPC``;
2. squeeze and compensation (:mod:`lic_plugin.compensation`): tile ``N`` kept images into
   one (Eq. 2) and learn ``Delta-x`` minimising the feature alignment loss (Eq. 8);
3. relabel: the distilled set names the observer as its soft-label source (Eq. 9), applied
   by the host's ``relabel`` evaluator.

The plugin imports the host (``ddbench``); the host never imports it: it is found
through the ``ddbench`` entry point ``lic = "lic_plugin.plugin"``.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
