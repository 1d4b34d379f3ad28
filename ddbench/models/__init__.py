"""Network architectures (ConvNet-D, ResNet-18, MobileNet-V2) and feature reading.

The registry entries live in :mod:`ddbench.default_plugins.architectures`.
"""
