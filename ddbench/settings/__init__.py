"""How a run is configured: evaluation budgets, KEY=VALUE options, config files."""
