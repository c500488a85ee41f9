"""Online serving: ``driftloop serve``, A/B and shadow routing, the prediction log, labels, export to monitoring.

The subpackage is split by job:

* :mod:`~driftloop.serving.validation`: request bodies (MLflow's ``dataframe_split`` / ``dataframe_records``)
  checked and coerced against the data contract and the model signature; every bad request is a 4xx;
* :mod:`~driftloop.serving.router`: routing modes and sticky A/B assignment by a salted hash of the entity id;
* :mod:`~driftloop.serving.workers`: inference processes (one per core) that hold the models, warm and swap them;
* :mod:`~driftloop.serving.batcher`: the dynamic batcher, admission control and isolation of a failing request;
* :mod:`~driftloop.serving.models`: which versions serve, polled from the registry and hot-swapped when warm;
* :mod:`~driftloop.serving.predlog`: the prediction log (bounded queue, background writer; SQLite or PostgreSQL);
* :mod:`~driftloop.serving.labels`: ``POST /labels`` into the labels landing zone, and the label join;
* :mod:`~driftloop.serving.service` and :mod:`~driftloop.serving.app`: the service and its HTTP endpoints;
* :mod:`~driftloop.serving.metrics`: Prometheus metrics;
* :mod:`~driftloop.serving.export`: windows of served traffic → scoring batches + inference runs for monitoring;
* :mod:`~driftloop.serving.evaluation`: the A/B (or shadow) decision on labelled traffic, logged to MLflow;
* :mod:`~driftloop.serving.cli`: ``driftloop serve``, ``driftloop serving-export``, ``driftloop ab-evaluate``.

Importing this package loads nothing heavy: the ``ab_evaluation`` DAG imports it at parse time.
"""
