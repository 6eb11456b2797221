"""The raw limit reference: the same DELETEs straight from a thread pool, no queue in between."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, Literal

import requests
import urllib3
from requests.adapters import HTTPAdapter

from bench.naive import record_url

HTTP_TIMEOUT_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class RawResult:
    """What one raw run did: wall seconds, requests issued, statuses seen and this process's CPU."""

    elapsed_s: float
    count: int
    statuses: Counter[int]
    cpu_s: float

    @property
    def rate(self) -> float:
        """Requests per second over the whole run."""
        return self.count / self.elapsed_s if self.elapsed_s > 0 else 0.0


def _cpu_s() -> float:
    """CPU seconds of this process, every thread (os.times() counts in 10 ms ticks: too coarse)."""
    return time.process_time()


def run_raw(
    api_base: str,
    auth_id: str,
    token: str,
    call_uuids: Sequence[str],
    *,
    threads: int,
    client: Literal["urllib3", "requests"] = "urllib3",
) -> RawResult:
    """DELETE every call_uuid's recording from ``threads`` threads; status ``0`` counts a transport error."""
    headers = {"X-Auth-ID": auth_id, "X-Auth-Token": token}
    urls = [record_url(api_base, auth_id, call_uuid) for call_uuid in call_uuids]
    delete: Callable[[str], int]
    cleanup: list[Callable[[], None]] = []
    if client == "urllib3":
        pool = urllib3.PoolManager(maxsize=threads, retries=False, timeout=HTTP_TIMEOUT_S)
        cleanup.append(pool.clear)

        def delete(url: str) -> int:
            return pool.request("DELETE", url, headers=headers).status

    elif client == "requests":
        local = threading.local()
        lock = threading.Lock()

        def session() -> requests.Session:
            found: requests.Session | None = getattr(local, "session", None)
            if found is None:
                found = requests.Session()
                found.trust_env = False
                found.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=1))
                local.session = found
                with lock:
                    cleanup.append(found.close)
            return found

        def delete(url: str) -> int:
            return session().delete(url, headers=headers, timeout=HTTP_TIMEOUT_S).status_code

    else:
        raise ValueError(f"client must be 'urllib3' or 'requests', not {client!r}")

    def one(url: str) -> int:
        try:
            return delete(url)
        except (OSError, urllib3.exceptions.HTTPError, requests.RequestException):
            return 0

    cpu_before = _cpu_s()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="raw") as executor:
        statuses = Counter(executor.map(one, urls))
    elapsed = time.perf_counter() - started
    cpu = _cpu_s() - cpu_before
    for close in cleanup:
        close()
    return RawResult(elapsed_s=elapsed, count=len(urls), statuses=statuses, cpu_s=cpu)
