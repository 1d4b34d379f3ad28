"""The plugins ddbench ships with: datasets, architectures, evaluators and the random distiller."""
