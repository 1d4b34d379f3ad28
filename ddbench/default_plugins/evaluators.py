"""Registers the host's evaluators through the same hook as any plugin."""

from ddbench.host.hookspecs import hookimpl


@hookimpl
def register_evaluators(register):
    from ddbench.evaluators.continual import ContinualEvaluator
    from ddbench.evaluators.relabel import RelabelEvaluator
    from ddbench.evaluators.train import TrainEvaluator

    register(RelabelEvaluator())
    register(TrainEvaluator())
    register(ContinualEvaluator())
