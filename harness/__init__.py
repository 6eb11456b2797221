"""Real parts for tests, chaos runs and benchmarks: private redis-server, sandbox, Celery workers."""
