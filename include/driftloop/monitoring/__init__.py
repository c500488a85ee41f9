"""Monitoring stage: drift and live performance of scored batches, the drift sensor and the retraining
policy."""
