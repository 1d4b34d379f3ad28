"""ddbench's datasets: :class:`Dataset` and the built-in loaders.

``Dataset`` is re-exported lazily from :mod:`ddbench.data.base`, so importing a light
submodule such as :mod:`ddbench.data.errors` does not pull in torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ddbench.data.base import Dataset

__all__ = ["Dataset"]


def __getattr__(name: str) -> Any:
    if name == "Dataset":
        from ddbench.data.base import Dataset

        return Dataset
    raise AttributeError(f"module 'ddbench.data' has no attribute {name!r}")
