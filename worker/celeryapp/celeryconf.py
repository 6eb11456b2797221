"""Celery configuration derived from the settings: at-least-once, JSON only, Flower events."""

from __future__ import annotations

from typing import Any

from kombu.entity import Queue

from recstop.worker.broker.transport import transport_for
from recstop.worker.config.settings import Settings
from recstop.worker.state.keys import QUEUE, TASK_NAME, URGENT_QUEUE
from recstop.worker.state.redisclient import HEALTH_CHECK_INTERVAL_S, sentinel_transport_options


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings recstop needs, for workers and producers alike."""
    redis = settings.redis
    return {
        "broker_url": redis.broker_url,  # every sentinel:// part with the Redis credentials
        # kombu's Redis transport with reliable fetch (and the Sentinel variant for sentinel://).
        "broker_transport": transport_for(redis.url),
        "broker_use_ssl": redis.tls_options(),  # rediss:// only; explicit, else kombu skips verification
        "broker_transport_options": {
            # Reliable fetch (worker.fetch): a silent worker's messages come back after the timeout.
            "consumer_timeout_s": redis.consumer_timeout_s,
            "consumer_heartbeat_s": redis.consumer_heartbeat_s,
            "socket_timeout": redis.socket_timeout_s,
            "socket_connect_timeout": redis.socket_timeout_s,
            "health_check_interval": HEALTH_CHECK_INTERVAL_S,
            **sentinel_transport_options(redis),
            # Publishes wait for replicas (WAIT) when asked to; see worker.transport.Channel.
            "wait_replicas": redis.wait_replicas,
            "wait_timeout_ms": redis.wait_timeout_ms,
        },
        "broker_connection_retry": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "broker_channel_error_retry": True,
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        "task_default_queue": QUEUE,
        # Workers consume both lanes; the transport always asks for the urgent one first.
        "task_queues": (_queue(URGENT_QUEUE), _queue(QUEUE)),
        "task_routes": {TASK_NAME: {"queue": QUEUE}},
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "task_send_sent_event": True,
        # Task events for Flower (RECSTOP_TASK_EVENTS, on by default).
        "worker_send_task_events": settings.task_events,
        "task_track_started": True,
        # Threads; unstarted tasks handed back at shutdown.
        "worker_pool": "recstop.worker.celeryapp.pool:ThreadPool",
        "worker_concurrency": settings.concurrency,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "worker_enable_remote_control": True,
        "task_time_limit": None,
        "timezone": "UTC",
        "enable_utc": True,
    }


def _queue(name: str) -> Queue:
    return Queue(name, routing_key=name)  # type: ignore[no-untyped-call]
