"""The host's evaluators: ``train`` (hard labels) and ``relabel`` (observer soft labels)."""
