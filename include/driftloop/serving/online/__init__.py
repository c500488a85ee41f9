"""Online serving: ``driftloop serve``, A/B and shadow routing, the prediction log, labels, export to
monitoring.

The subpackage is split by job:

* :mod:`~driftloop.serving.online.validation`: request bodies (MLflow's ``dataframe_split`` /
  ``dataframe_records``) checked and coerced against the data contract and the model signature; every bad
  request is a 4xx;
* :mod:`~driftloop.serving.online.router`: routing modes and sticky A/B assignment by a salted hash of the
  entity id;
* :mod:`~driftloop.serving.online.workers`: inference processes (one per core) that hold the models, warm and
  swap them;
* :mod:`~driftloop.serving.online.batcher`: the dynamic batcher, admission control and isolation of a failing
  request;
* :mod:`~driftloop.serving.online.jobs`: the request, its rows for one model and its result, as the batcher
  queues them;
* :mod:`~driftloop.serving.online.models`: which versions serve, polled from the registry and hot-swapped when
  warm;
* :mod:`~driftloop.serving.online.prediction_log`: the prediction log (bounded queue, background writer;
  SQLite or PostgreSQL); :mod:`~driftloop.serving.online.prediction_log_store`: its tables, stores and sinks;
* :mod:`~driftloop.serving.online.labels`: ``POST /labels`` into the labels landing zone, and the label join;
* :mod:`~driftloop.serving.online.service` and :mod:`~driftloop.serving.online.app`: the service and its HTTP
  endpoints;
* :mod:`~driftloop.serving.online.metrics`: Prometheus metrics;
* :mod:`~driftloop.serving.online.export`: windows of served traffic → scoring batches + inference runs for
  monitoring;
* :mod:`~driftloop.serving.online.ab_decision`: the A/B (or shadow) decision on labelled traffic, logged to
  MLflow;
* :mod:`~driftloop.serving.online.cli`: ``driftloop serve``, ``driftloop serving-export``,
  ``driftloop ab-evaluate``.

Importing this package loads nothing heavy: the ``ab_evaluation`` DAG imports it at parse time.
"""
