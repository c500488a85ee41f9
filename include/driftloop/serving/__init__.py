"""Serving: batch inference (:mod:`driftloop.serving.batch_scoring`) and the online service
(:mod:`driftloop.serving.online`)."""
