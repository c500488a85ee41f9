"""Core: the bus, settings, dataset configs, state folders, MLflow tracking and registry access, task types.
Imports no stage."""
