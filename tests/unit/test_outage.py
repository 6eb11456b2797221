"""RedisOutage: a failing loop logs when the outage starts, changes, lasts and ends; it backs off."""

from __future__ import annotations

from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError

from recstop.worker.config.redis import RedisSettings
from recstop.worker.state.outage import RedisOutage


class Lines:
    """A logger keeping (level, event, fields) of each line."""

    def __init__(self):
        self.lines = []

    def warning(self, event, **fields):
        self.lines.append(("warning", event, fields))

    def info(self, event, **fields):
        self.lines.append(("info", event, fields))


def test_an_outage_is_a_line_when_it_starts_changes_and_every_minute_then_one_when_it_ends():
    """Tries every second for 3 minutes: a line at 0, on the new cause, at each minute, and one at the end."""
    now = [0.0]
    log = Lines()
    settings = RedisSettings(url="redis://:s3cret-pw@127.0.0.1:6399/0")
    outage = RedisOutage.for_settings("x_redis_unavailable", settings, logger=log, clock=lambda: now[0])
    waits = []
    refused = RedisConnectionError("Error 111 connecting to 127.0.0.1:6399. Connection refused.")
    for second in range(180):
        now[0] = float(second)
        waits.append(outage.failed(AuthenticationError("WRONGPASS") if second == 30 else refused))
    now[0] = 180.0
    outage.recovered()
    outage.recovered()  # nothing more: the outage is over

    assert waits[:6] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert [(level, event, f.get("down_s")) for level, event, f in log.lines] == [
        ("warning", "x_redis_unavailable", 0.0),
        ("warning", "x_redis_unavailable", 30.0),  # the cause changed
        ("warning", "x_redis_unavailable", 31.0),  # and changed back
        ("warning", "x_redis_unavailable", 91.0),  # a reminder a minute after the last line
        ("warning", "x_redis_unavailable", 151.0),
        ("info", "x_redis_recovered", 180.0),
    ]
    first, auth = log.lines[0][2]["error"], log.lines[1][2]["error"]
    assert first == (
        "Redis at redis://:***@127.0.0.1:6399/0: connection refused: nothing listens there "
        "(is redis-server running? is RECSTOP_BROKER_URL right?)"
    )
    assert auth.startswith("Redis at redis://:***@127.0.0.1:6399/0: authentication failed")
    assert log.lines[-1][2] == {
        "redis": "redis://:***@127.0.0.1:6399/0",
        "after_failures": 180,
        "down_s": 180.0,
    }
    assert "s3cret-pw" not in repr(log.lines)
