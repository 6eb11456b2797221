"""recstop worker: stops Vobiz call recordings from a Celery queue on Redis.

``celery -A worker worker`` finds the app in :mod:`worker.celery`, the entry point that reads
the environment once. Importing this package reads nothing.
"""

from worker.app import create_app
from worker.settings import Settings

__all__ = ["Settings", "create_app"]
