"""ddbench: a benchmark toolkit for dataset distillation, with LIC as its headline method."""

from ddbench.host.hookspecs import hookimpl
from ddbench.version import __version__

__all__ = ["hookimpl", "__version__", "run", "evaluate"]


def __getattr__(name: str):
    """``ddbench.run`` and ``ddbench.evaluate`` (the Python API), imported on first use so that
    ``import ddbench`` stays light."""
    if name in ("run", "evaluate"):
        from ddbench import python_api

        return getattr(python_api, name)
    raise AttributeError(f"module 'ddbench' has no attribute {name!r}")
