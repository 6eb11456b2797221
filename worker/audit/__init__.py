"""The audit trail: every event of a stop's life, copied from a Redis stream to SQL (docs/audit.md)."""
