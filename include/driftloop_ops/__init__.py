"""Driftloop operations: the embedded stack, the demo, the closed-loop driver and the Airflow REST client.

Kept apart from the ``driftloop`` ML package: this is how Driftloop is run and exercised (``driftloop up``,
``driftloop demo``, the benchmarks and the end-to-end and topology tests all drive the loop through the same
:mod:`driftloop_ops.loop`), not what the DAG tasks execute.
"""
