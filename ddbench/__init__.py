"""ddbench: a benchmark toolkit for dataset distillation, with LIC as its headline method."""

from ddbench.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
