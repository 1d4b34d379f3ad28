"""The one pipeline every command runs, its modules in the order data flows:

- :mod:`ddbench.pipeline.config`: the run's configuration and plan (names and options resolved);
- :mod:`ddbench.pipeline.preflight`: every input checked against the data before any model trains;
- :mod:`ddbench.pipeline.context`: what the stages share (observer, teacher, device, run folder);
- :mod:`ddbench.pipeline.distil`: each method's distillations (resumable units);
- :mod:`ddbench.pipeline.evaluate`: evaluation units, and saved sets as they are;
- :mod:`ddbench.pipeline.driver`: ``run(config, ui)`` end to end, results written;
- :mod:`ddbench.pipeline.planner`: ``--plan``, every stage's cost from shapes alone.

The observer stage is :mod:`ddbench.observer`. ``ddbench.runner`` re-exports these names.
"""
