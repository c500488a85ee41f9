"""Data stage: sources, the simulator, data contracts, ingestion, training snapshots and their profiles."""
