"""The host's own distiller: ``random`` (random real images per class)."""
