"""Tests for the fleet-wide rate limiter against a real Redis."""

import math
import multiprocessing
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import pytest
import redis

from shared.core.rate_windows import RateWindow, parse_rate_limits
from shared.upstream.ratelimit import LimiterUnreachableError, RedisRateLimiter
from stockpile.localstack import free_port, start_redis
from tests.support import max_in_sliding_interval, redis_now, wait_for_redis_time

MakeLimiter = Callable[..., RedisRateLimiter]


@pytest.fixture
def key_prefix(redis_client: "redis.Redis[bytes]") -> Iterator[str]:
    prefix = f"test:ratelimit:{uuid.uuid4().hex}"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}:*"))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
def make_limiter(redis_client: "redis.Redis[bytes]", key_prefix: str) -> MakeLimiter:
    def make(
        windows: Sequence[RateWindow],
        history: Callable[[], Iterable[float]] = lambda: (),
    ) -> RedisRateLimiter:
        return RedisRateLimiter(redis_client, windows, history=history, key_prefix=key_prefix)

    return make


def assert_frees_at(limiter: RedisRateLimiter, frees_at: float) -> None:
    """Ask until granted; each answer must agree with Redis' clock about when a token frees."""
    while True:
        attempt = limiter.acquire()
        assert attempt.granted == (attempt.at >= frees_at), (attempt, frees_at)
        if attempt.granted:
            return
        assert attempt.retry_after == pytest.approx(frees_at - attempt.at, abs=1e-6)
        time.sleep(min(attempt.retry_after, 0.05))


def test_limiter_rejects_missing_or_duplicate_windows(
    redis_client: "redis.Redis[bytes]",
) -> None:
    with pytest.raises(ValueError, match="at least one window"):
        RedisRateLimiter(redis_client, [], history=lambda: ())
    with pytest.raises(ValueError, match="distinct lengths"):
        RedisRateLimiter(redis_client, [RateWindow(1, 60), RateWindow(5, 60)], history=lambda: ())


# ---------------------------------------------------------------------------- single caller


@pytest.mark.parametrize("seconds", [1, 2])
def test_acquire_grants_exactly_limit_then_denies_until_window_passes(
    make_limiter: MakeLimiter, seconds: int
) -> None:
    limiter = make_limiter([RateWindow(3, seconds)])

    first = limiter.acquire(cost_id="job-0")
    time.sleep(0.3)
    later = [limiter.acquire(cost_id=f"job-{i}") for i in (1, 2)]
    denied = limiter.acquire()

    assert all(g.granted and g.retry_after == 0 for g in [first, *later])
    assert not denied.granted
    assert 0 < denied.retry_after <= seconds
    # The first grant frees its token exactly `seconds` after it was taken.
    assert denied.retry_after == pytest.approx(first.at + seconds - denied.at, abs=1e-6)
    # Every later answer agrees with Redis' clock: refused until the first token frees, then
    # granted (however late this process gets to ask on a loaded machine).
    assert_frees_at(limiter, first.at + seconds)
    # The next token frees exactly a window after it was taken.
    assert_frees_at(limiter, later[0].at + seconds)


def test_acquire_margin_holds_each_token_longer_than_its_window(
    redis_client: "redis.Redis[bytes]", key_prefix: str
) -> None:
    limiter = RedisRateLimiter(
        redis_client,
        [RateWindow(1, 1)],
        history=lambda: (),
        key_prefix=key_prefix,
        margin_seconds=0.2,
    )

    first = limiter.acquire()
    denied = limiter.acquire()
    assert first.granted
    assert not denied.granted
    assert denied.retry_after == pytest.approx(first.at + 1.2 - denied.at, abs=1e-6)
    assert_frees_at(limiter, first.at + 1.2)  # not at first.at + 1, as a plain window would


@pytest.mark.parametrize("margin", [-0.1, 1.0])
def test_limiter_rejects_margin_outside_a_second(
    redis_client: "redis.Redis[bytes]", margin: float
) -> None:
    with pytest.raises(ValueError, match="margin"):
        RedisRateLimiter(
            redis_client, [RateWindow(1, 1)], history=lambda: (), margin_seconds=margin
        )


def test_acquire_tighter_window_binds(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter([RateWindow(5, 60), RateWindow(3, 1)])

    first = [limiter.acquire() for _ in range(4)]
    per_second = limiter.acquire()
    time.sleep(per_second.retry_after + 0.02)
    second = [limiter.acquire().granted for _ in range(3)]
    per_minute = limiter.acquire()

    assert [grant.granted for grant in first] == [True, True, True, False]
    assert 0 < per_second.retry_after <= 1
    assert second == [True, True, False]
    assert per_minute.retry_after == pytest.approx(first[0].at + 60 - per_minute.at, abs=1e-6)


@pytest.mark.parametrize(
    ("windows", "limit"),
    [
        ([RateWindow(2, 30), RateWindow(5, 60)], 2),
        ([RateWindow(5, 30), RateWindow(2, 60)], 2),
    ],
)
def test_acquire_denial_takes_no_token_from_other_windows(
    make_limiter: MakeLimiter, windows: list[RateWindow], limit: int
) -> None:
    limiter = make_limiter(windows)

    results = [limiter.acquire().granted for _ in range(10)]

    assert results == [True] * limit + [False] * (10 - limit)
    assert [w.used for w in limiter.status().windows] == [limit, limit]


def test_acquire_retry_after_is_longest_wait_over_blocking_windows(
    make_limiter: MakeLimiter,
) -> None:
    limiter = make_limiter([RateWindow(1, 1), RateWindow(1, 2)])

    grant = limiter.acquire()
    denied = limiter.acquire()

    assert grant.granted
    assert not denied.granted
    assert denied.retry_after == pytest.approx(grant.at + 2 - denied.at, abs=1e-6)


def test_acquire_sets_key_ttls_to_window_length(
    make_limiter: MakeLimiter, redis_client: "redis.Redis[bytes]", key_prefix: str
) -> None:
    limiter = make_limiter([RateWindow(3, 2), RateWindow(25, 86400)])

    limiter.acquire()

    assert 0 < redis_client.pttl(f"{key_prefix}:w:2") <= 2000
    assert 86_399_000 < redis_client.pttl(f"{key_prefix}:w:86400") <= 86_400_000
    assert 86_399_000 < redis_client.pttl(f"{key_prefix}:seq") <= 86_400_000
    # Markers stay as long as Redis keeps its data: their absence is what signals a loss.
    assert redis_client.pttl(f"{key_prefix}:w:2:initialized") == -1


def test_acquire_cost_id_recorded_in_log(
    make_limiter: MakeLimiter, redis_client: "redis.Redis[bytes]", key_prefix: str
) -> None:
    limiter = make_limiter([RateWindow(3, 60)])

    limiter.acquire(cost_id="job-42")
    limiter.acquire(cost_id="job-42")

    members = redis_client.zrange(f"{key_prefix}:w:60", 0, -1)
    assert len(members) == 2
    assert all(m.endswith(b":job-42") for m in members)


# ---------------------------------------------------------------------------------- confirm


def test_confirm_moves_the_token_to_the_send_so_the_window_counts_from_there(
    make_limiter: MakeLimiter, redis_client: "redis.Redis[bytes]"
) -> None:
    limiter = make_limiter([RateWindow(1, 1)])
    grant = limiter.acquire()
    wait_for_redis_time(redis_client, grant.at + 0.5)  # a stall between grant and send

    sent_at = limiter.confirm(grant)

    assert sent_at is not None
    assert sent_at >= grant.at + 0.5
    # A full window after the send, not after the grant.
    assert_frees_at(limiter, sent_at + 1)


def test_confirm_refuses_a_token_whose_place_another_call_took(
    make_limiter: MakeLimiter, redis_client: "redis.Redis[bytes]", key_prefix: str
) -> None:
    limiter = make_limiter([RateWindow(1, 1), RateWindow(5, 60)])
    stalled = limiter.acquire(cost_id="stalled")
    wait_for_redis_time(redis_client, stalled.at + 1)
    other = limiter.acquire(cost_id="other")  # the stalled token has left the 1 s window
    assert other.granted

    assert limiter.confirm(stalled) is None

    # The void token is gone from the minute window too: the budget holds only the real call.
    assert limiter.status().windows[1].used == 1
    assert redis_client.zrange(f"{key_prefix}:w:60", 0, -1) == [str(other.token).encode()]
    assert limiter.confirm(other) is not None


def test_confirm_refuses_a_token_lost_with_redis_data(
    make_limiter: MakeLimiter, redis_client: "redis.Redis[bytes]", key_prefix: str
) -> None:
    limiter = make_limiter([RateWindow(5, 60)])
    grant = limiter.acquire()
    redis_client.delete(*redis_client.scan_iter(match=f"{key_prefix}:*"))

    assert limiter.confirm(grant) is None


def test_confirm_needs_a_granted_token(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter([RateWindow(1, 60)])
    limiter.acquire()
    denied = limiter.acquire()

    assert not denied.granted
    with pytest.raises(ValueError, match="granted token"):
        limiter.confirm(denied)


# ------------------------------------------------------------------------------ concurrency


def test_acquire_concurrent_threads_never_exceed_any_sliding_window(
    make_limiter: MakeLimiter,
) -> None:
    windows = [RateWindow(5, 1), RateWindow(8, 2)]
    limiter = make_limiter(windows)
    granted_at: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 2.5

    def hammer() -> None:
        while time.monotonic() < deadline:
            grant = limiter.acquire()
            if grant.granted:
                with lock:
                    granted_at.append(grant.at)
            else:
                time.sleep(0.002)

    threads = [threading.Thread(target=hammer) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    # Grant times are Redis' clock at the decision, read inside the script: local clocks would
    # add the network and scheduling delay and could show a false violation.
    assert max_in_sliding_interval(granted_at, 1) <= 5
    assert max_in_sliding_interval(granted_at, 2) <= 8
    # Greedy use of 2.5 s under these windows is 13 grants (5 + 3 + 5); demand always exceeded
    # supply, so all but scheduling jitter of that must have been granted.
    assert 11 <= len(granted_at) <= 13


def test_acquire_simultaneous_demand_gets_exactly_the_limit(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(parse_rate_limits("10/minute"))
    start = threading.Barrier(50)
    results: list[bool] = []
    lock = threading.Lock()

    def attempt() -> None:
        start.wait(timeout=10)
        granted = limiter.acquire().granted
        with lock:
            results.append(granted)

    threads = [threading.Thread(target=attempt) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(results) == 50
    assert results.count(True) == 10
    assert limiter.status().windows[0].used == 10


def _process_attempts(
    redis_url: str,
    key_prefix: str,
    attempts: int,
    start: Any,
    results: "multiprocessing.Queue[list[float]]",
) -> None:
    client = redis.Redis.from_url(redis_url)
    limiter = RedisRateLimiter(
        client, [RateWindow(10, 60)], history=lambda: (), key_prefix=key_prefix
    )
    start.wait(timeout=120)  # spawned interpreters start slowly on a loaded machine
    grants = [limiter.acquire(cost_id=str(os.getpid())) for _ in range(attempts)]
    results.put([g.at for g in grants if g.granted])
    client.close()


def test_acquire_concurrent_processes_get_exactly_the_limit(
    make_limiter: MakeLimiter, redis_url: str, key_prefix: str
) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(4)
    results: multiprocessing.Queue[list[float]] = context.Queue()
    processes = [
        context.Process(target=_process_attempts, args=(redis_url, key_prefix, 6, start, results))
        for _ in range(4)
    ]
    for process in processes:
        process.start()
    granted: list[float] = []
    try:
        for _ in processes:
            granted += results.get(timeout=150)
    except queue.Empty:
        pytest.fail("a limiter process did not report back")
    finally:
        for process in processes:
            process.join(timeout=10)

    assert all(p.exitcode == 0 for p in processes)
    assert len(granted) == 10
    assert make_limiter([RateWindow(10, 60)]).status().windows[0].used == 10


# --------------------------------------------------------------------------------- cooldown


def test_cooldown_denies_whole_fleet_until_it_ends(
    make_limiter: MakeLimiter, redis_url: str, key_prefix: str
) -> None:
    windows = parse_rate_limits("100/minute")
    limiter = make_limiter(windows)
    other_client = redis.Redis.from_url(redis_url, decode_responses=True)
    other_worker = RedisRateLimiter(
        other_client, windows, history=lambda: (), key_prefix=key_prefix
    )

    before = redis_now(other_client)
    limiter.cooldown(0.6, "Note: please spread out your calls")
    mine = limiter.acquire()
    theirs = other_worker.acquire()
    status = other_worker.status()

    assert not mine.granted
    assert not theirs.granted
    assert 0.6 - (mine.at - before) <= mine.retry_after <= 0.6
    assert theirs.retry_after == pytest.approx(mine.retry_after - (theirs.at - mine.at), abs=1e-6)
    assert status.cooldown_reason == "Note: please spread out your calls"
    assert status.windows[0].used == 0
    time.sleep(theirs.retry_after + 0.02)
    assert limiter.acquire().granted
    after = limiter.status()
    assert after.cooldown_remaining == 0
    assert after.cooldown_reason is None
    other_client.close()


def test_cooldown_shorter_does_not_shorten_longer(
    make_limiter: MakeLimiter, redis_client: "redis.Redis[bytes]"
) -> None:
    limiter = make_limiter([RateWindow(5, 60)])

    before = redis_now(redis_client)
    limiter.cooldown(5, "per-day message")
    limiter.cooldown(0.1, "per-second message")
    status = limiter.status()
    denied = limiter.acquire()

    assert 5 - (denied.at - before) <= status.cooldown_remaining <= 5
    assert status.cooldown_reason == "per-day message"
    assert 5 - (denied.at - before) <= denied.retry_after <= 5


def test_cooldown_longer_extends_shorter(
    make_limiter: MakeLimiter, redis_client: "redis.Redis[bytes]"
) -> None:
    limiter = make_limiter([RateWindow(5, 60)])

    limiter.cooldown(0.5, "first")
    before = redis_now(redis_client)
    limiter.cooldown(3, "second")
    denied = limiter.acquire()

    assert 3 - (denied.at - before) <= denied.retry_after <= 3
    assert limiter.status().cooldown_reason == "second"


def test_cooldown_and_full_window_wait_for_the_later(
    make_limiter: MakeLimiter, redis_client: "redis.Redis[bytes]"
) -> None:
    limiter = make_limiter([RateWindow(1, 2)])
    first = limiter.acquire()

    limiter.cooldown(0.5, "short")
    short = limiter.acquire()
    before = redis_now(redis_client)
    limiter.cooldown(3, "long")
    long = limiter.acquire()

    # The full window (frees 2 s after the first call) outlasts the short cooldown...
    assert short.retry_after == pytest.approx(first.at + 2 - short.at, abs=1e-6)
    # ...and the long cooldown outlasts the window.
    assert 3 - (long.at - before) <= long.retry_after <= 3


@pytest.mark.parametrize("seconds", [0, -1, math.nan, math.inf])
def test_cooldown_rejects_non_positive_or_non_finite(
    make_limiter: MakeLimiter, seconds: float
) -> None:
    limiter = make_limiter([RateWindow(5, 60)])

    with pytest.raises(ValueError, match="positive number of seconds"):
        limiter.cooldown(seconds, "bad")
    assert limiter.status().cooldown_remaining == 0


# -------------------------------------------------------------------------- quota exhausted


def test_exhaust_blocks_until_oldest_entry_leaves_window(make_limiter: MakeLimiter) -> None:
    window = RateWindow(3, 2)
    limiter = make_limiter([RateWindow(100, 60), window])
    oldest = limiter.acquire()
    time.sleep(0.5)

    wait = limiter.exhaust(window, "Information: daily rate limit reached")
    denied = limiter.acquire()
    status = limiter.status()

    assert 0 < wait <= 1.5
    exhausted_at = oldest.at + 2 - wait  # by Redis' clock
    assert not denied.granted
    assert denied.retry_after == pytest.approx(oldest.at + 2 - denied.at, abs=1e-6)
    assert [(w.used, w.remaining) for w in status.windows] == [(1, 99), (3, 0)]
    assert status.available == 0
    time.sleep(denied.retry_after + 0.02)
    # Only the real entry has left; the marks stamped at exhaustion still hold the rest.
    assert limiter.acquire().granted
    assert_frees_at(limiter, exhausted_at + 2)


def test_exhaust_empty_window_blocks_for_full_length(
    make_limiter: MakeLimiter, redis_client: "redis.Redis[bytes]"
) -> None:
    day = RateWindow(25, 86400)
    limiter = make_limiter([RateWindow(1, 1), day])

    before = redis_now(redis_client)
    wait = limiter.exhaust(day, "daily limit")
    denied = limiter.acquire()

    assert 86400 - (denied.at - before) <= denied.retry_after <= wait <= 86400
    assert limiter.status().windows[1].used == 25


def test_exhaust_full_window_adds_nothing(
    make_limiter: MakeLimiter, redis_client: "redis.Redis[bytes]"
) -> None:
    window = RateWindow(2, 60)
    limiter = make_limiter([window])
    first = limiter.acquire()
    limiter.acquire()

    wait = limiter.exhaust(window, "daily limit")

    assert wait == pytest.approx(first.at + 60 - redis_now(redis_client), abs=0.05)
    assert limiter.status().windows[0].used == 2


def test_exhaust_unknown_window_rejected(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(parse_rate_limits("1/second,25/day"))

    with pytest.raises(ValueError, match="25/hour is not one of"):
        limiter.exhaust(RateWindow(25, 3600), "daily limit")


# ----------------------------------------------------------------------------------- status


def test_status_reports_usage_and_available_budget(
    make_limiter: MakeLimiter, redis_client: "redis.Redis[bytes]"
) -> None:
    limiter = make_limiter([RateWindow(3, 10), RateWindow(5, 60)])

    assert limiter.status().available == 3
    first = limiter.acquire()
    limiter.acquire()
    two = limiter.status()
    limiter.acquire()
    three = limiter.status()
    before_cooldown = redis_now(redis_client)
    limiter.cooldown(2, "throttled")
    cooling = limiter.status()
    after = redis_now(redis_client)

    assert [(w.used, w.remaining, w.retry_after) for w in two.windows] == [(2, 1, 0), (2, 3, 0)]
    assert two.available == 1
    assert [(w.used, w.remaining) for w in three.windows] == [(3, 0), (3, 2)]
    assert first.at + 10 - after <= three.windows[0].retry_after <= 10
    assert three.windows[1].retry_after == 0
    assert three.available == 0
    assert 2 - (after - before_cooldown) <= cooling.cooldown_remaining <= 2
    assert cooling.cooldown_reason == "throttled"
    assert cooling.initialized


def test_status_available_zero_during_cooldown_with_free_windows(
    make_limiter: MakeLimiter,
) -> None:
    limiter = make_limiter([RateWindow(5, 60)])

    limiter.cooldown(1, "throttled")

    status = limiter.status()
    assert status.windows[0].remaining == 5
    assert status.available == 0


def test_status_does_not_seed_lost_state(make_limiter: MakeLimiter) -> None:
    calls: list[int] = []

    def history() -> list[float]:
        calls.append(1)
        return []

    limiter = make_limiter([RateWindow(5, 60)], history)

    before = limiter.status()

    assert not before.initialized
    assert not limiter.is_initialized()
    assert calls == []
    assert limiter.ensure_initialized()
    assert calls == [1]
    assert limiter.is_initialized()
    assert limiter.status().available == 5


# ---------------------------------------------------------------------------------- rebuild


def test_rebuild_recent_calls_fill_day_window(
    make_limiter: MakeLimiter, redis_client: "redis.Redis[bytes]"
) -> None:
    now = redis_now(redis_client)
    audit = [now - 3600 * hours for hours in (5, 4, 3, 2, 1)]
    limiter = make_limiter(parse_rate_limits("1/second,5/day"), lambda: audit)

    denied = limiter.acquire()

    assert not denied.granted
    # The oldest audited call (5 h ago) frees the first token.
    assert denied.retry_after == pytest.approx(86400 - 5 * 3600, abs=1)
    assert [w.used for w in limiter.status().windows] == [0, 5]


def test_rebuild_concurrent_threads_seed_once(
    make_limiter: MakeLimiter, redis_client: "redis.Redis[bytes]"
) -> None:
    now = redis_now(redis_client)
    audit = [now - 600, now - 300, now - 300]
    limiter = make_limiter(parse_rate_limits("5/day"))
    start = threading.Barrier(8)
    seeded: list[bool] = []
    lock = threading.Lock()

    def rebuild() -> None:
        start.wait(timeout=10)
        result = limiter.rebuild(audit)
        with lock:
            seeded.append(result)

    threads = [threading.Thread(target=rebuild) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert sorted(seeded) == [False] * 7 + [True]
    # Two calls in the same microsecond are two calls.
    assert limiter.status().windows[0].used == 3


def test_rebuild_same_history_twice_is_idempotent(
    make_limiter: MakeLimiter, redis_client: "redis.Redis[bytes]", key_prefix: str
) -> None:
    now = redis_now(redis_client)
    audit = [now - 60, now - 30]
    limiter = make_limiter(parse_rate_limits("5/day"))

    assert limiter.rebuild(audit)
    redis_client.delete(f"{key_prefix}:w:86400:initialized")
    assert limiter.rebuild(reversed(audit))

    assert limiter.status().windows[0].used == 2


def test_rebuild_ignores_calls_older_than_each_window(
    make_limiter: MakeLimiter, redis_client: "redis.Redis[bytes]"
) -> None:
    now = redis_now(redis_client)
    audit = [now - 2 * 86400, now - 86401, now - 7200, now - 7000, now - 10]
    limiter = make_limiter([RateWindow(2, 60), RateWindow(10, 86400)])

    assert limiter.rebuild(audit)

    assert [w.used for w in limiter.status().windows] == [1, 3]


def test_rebuild_skips_windows_already_initialized(
    make_limiter: MakeLimiter, redis_client: "redis.Redis[bytes]"
) -> None:
    limiter = make_limiter(parse_rate_limits("5/day"))
    limiter.acquire()
    now = redis_now(redis_client)

    seeded = limiter.rebuild([now - 1, now - 2, now - 3])

    assert not seeded
    assert limiter.status().windows[0].used == 1


def test_rebuild_future_call_counts_as_now(
    make_limiter: MakeLimiter, redis_client: "redis.Redis[bytes]"
) -> None:
    limiter = make_limiter([RateWindow(1, 2)], lambda: [redis_now(redis_client) + 3600])

    before = redis_now(redis_client)
    denied = limiter.acquire()

    assert not denied.granted
    assert 2 - (denied.at - before) <= denied.retry_after <= 2


def test_rebuild_rejects_non_finite_time(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(parse_rate_limits("5/day"))

    with pytest.raises(ValueError, match="finite unix timestamp"):
        limiter.rebuild([math.nan])
    assert not limiter.is_initialized()


def test_acquire_after_state_loss_reseeds_from_history(
    make_limiter: MakeLimiter, redis_client: "redis.Redis[bytes]", key_prefix: str
) -> None:
    audit: list[float] = []
    loads: list[int] = []

    def history() -> list[float]:
        loads.append(1)
        return list(audit)

    limiter = make_limiter(parse_rate_limits("3/day"), history)
    for _ in range(2):
        grant = limiter.acquire()
        assert grant.granted
        audit.append(grant.at)

    # A Redis restart without persistence loses every key.
    redis_client.delete(*redis_client.scan_iter(match=f"{key_prefix}:*"))
    third = limiter.acquire()
    fourth = limiter.acquire()

    assert third.granted
    assert not fourth.granted
    assert fourth.retry_after == pytest.approx(audit[0] + 86400 - fourth.at, abs=1e-5)
    assert loads == [1, 1]


def test_acquire_history_failure_grants_nothing(make_limiter: MakeLimiter) -> None:
    def history() -> list[float]:
        raise ConnectionError("audit database unavailable")

    limiter = make_limiter(parse_rate_limits("5/day"), history)

    with pytest.raises(ConnectionError, match="audit database unavailable"):
        limiter.acquire()
    assert limiter.status().windows[0].used == 0
    assert not limiter.is_initialized()


def test_rebuild_new_window_seeded_without_recounting_existing(
    make_limiter: MakeLimiter, redis_client: "redis.Redis[bytes]"
) -> None:
    minute = RateWindow(10, 60)
    before = make_limiter([minute])
    audit = [redis_now(redis_client) - 7200, redis_now(redis_client) - 3600]
    for _ in range(2):
        audit.append(before.acquire().at)

    # The next deployment adds a daily window; only that window is seeded from the audit log.
    after = make_limiter([minute, RateWindow(5, 86400)], lambda: audit)
    grant = after.acquire()

    assert grant.granted
    assert [w.used for w in after.status().windows] == [3, 5]
    assert not after.acquire().granted


def test_a_redis_that_does_not_answer_is_unreachable_but_a_refused_password_stays_loud() -> None:
    windows = parse_rate_limits("5/second")
    nobody = redis.Redis(port=free_port(), socket_connect_timeout=1)
    with pytest.raises(LimiterUnreachableError, match=r"Redis did not answer \(ConnectionError\)"):
        RedisRateLimiter(nobody, windows, history=lambda: ()).acquire()

    with start_redis() as server:
        redis.Redis.from_url(server.url).config_set("requirepass", "right")
        try:
            wrong = redis.Redis.from_url(server.url, password="wrong")
            # Waiting will not fix a wrong password: not an outage, so the caller sees it as is.
            with pytest.raises(redis.exceptions.AuthenticationError):
                RedisRateLimiter(wrong, windows, history=lambda: ()).acquire()
        finally:  # so that the server's own stop can still talk to it
            redis.Redis.from_url(server.url, password="right").config_set("requirepass", "")
