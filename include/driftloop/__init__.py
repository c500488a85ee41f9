"""Driftloop: closed-loop MLOps. Stage subpackages (data, training, governance, monitoring, serving) over
`core`; no Airflow imports."""

__version__ = "0.1.0"
