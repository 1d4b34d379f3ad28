"""The ``ddbench`` entry point of LIC: registers the ``lic`` distiller."""

from __future__ import annotations

from ddbench.api import hookimpl


@hookimpl
def register_distillers(register):
    from lic_plugin.distiller import LICDistiller

    register(LICDistiller())
