"""Driftloop: closed-loop MLOps. One module per lifecycle stage; no Airflow imports anywhere in this package."""

__version__ = "0.1.0"
