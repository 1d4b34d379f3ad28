"""Sets from and for other tools: image folders and tensor files, DD-Ranking's format and metrics."""
