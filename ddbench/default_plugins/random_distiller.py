"""Registers the built-in ``random`` distiller through the same hook as any plugin."""

from ddbench.host.hookspecs import hookimpl


@hookimpl
def register_distillers(register):
    from ddbench.distillers.random import RandomDistiller

    register(RandomDistiller())
