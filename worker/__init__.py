"""recstop's worker: stops Vobiz call recordings from a Celery queue on Redis.

``celery -A recstop.worker worker`` finds the app in :mod:`recstop.worker.celery`, the entry point
that reads the environment once. Importing this package imports nothing: a producer imports the
parts it shares with the worker (``model``, ``config``, ``state``) without Celery or kombu.

Packages, each one concept (docs/architecture.md draws how they depend on each other):
``model`` (the vocabulary, errors, validation, status records), ``config`` (settings and the
environment), ``state`` (Redis: keys, scripts, the stop store, results, dead letters, in-flight
lists), ``policy`` (backoff, rate limit, urgent first), ``api`` (the Vobiz client), ``broker`` (the
kombu transport), ``run`` (one attempt, the scheduler), ``celeryapp`` (the Celery app, task and
consumer), ``observability`` (logs, metrics, health), ``audit`` (the audit trail in SQL).
"""
