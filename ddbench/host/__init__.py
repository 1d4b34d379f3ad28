"""The plugin host: hook specifications, the plugin manager (entry points in the ``ddbench`` group) and the registry of everything plugins register."""
