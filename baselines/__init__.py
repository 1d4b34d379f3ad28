"""Baseline distillation methods, shipped as ordinary ``ddbench`` plugins.

Each module here (``baselines.sre2l``, ``baselines.squeeze``) is a pluggy plugin found
through the ``ddbench`` entry-point group, exactly as a third-party method would be. These
modules import the host (``ddbench``); the host never imports them, so any of them could
move to its own distribution without a code change.
"""
