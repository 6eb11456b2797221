"""What an operator reads: structured logs, Prometheus metrics, health checks, the backlog's age."""
