"""The Celery side.

The app and its settings, the task, the consumer that refuses poison, ETA messages, the durable revoke,
the thread pool.
"""
