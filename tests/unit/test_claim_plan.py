import pytest

from cronswarm.common import (
    CronSchedule,
    Job,
    Keyspace,
    encode_start,
    encode_tick,
    restart_token,
    start_floor,
)
from cronswarm.coord import Compare, Get, KeyValue, Put, Txn, TxnResult
from cronswarm.worker import (
    Outcome,
    Ticket,
    build_claim,
    in_time,
    plan_ticks,
    read_claim,
    rendezvous_owner,
    still_due,
)

S = 1000
EVERY_SECOND = CronSchedule.parse("* * * * * *")


def job(**kw: object) -> Job:
    return Job.from_dict({"name": "j", "schedule": "* * * * * *", "command": "true", **kw})


@pytest.mark.parametrize(
    ("misfire", "window", "last", "now", "skip", "run"),
    [
        # on time: the newest tick runs, nothing was missed
        ("skip", 60, 99 * S, 100 * S + 5, 0, (100 * S,)),
        ("run_latest", 60, 99 * S, 100 * S + 5, 0, (100 * S,)),
        ("run_all", 60, 99 * S, 100 * S + 5, 0, (100 * S,)),
        # ten ticks missed, all inside the window
        ("skip", 60, 90 * S, 100 * S + 5, 9, (100 * S,)),
        ("run_latest", 60, 90 * S, 100 * S + 5, 9, (100 * S,)),
        ("run_all", 60, 90 * S, 100 * S + 5, 0, tuple(range(91 * S, 101 * S, S))),
        # a 5 s window: ticks older than it are skipped whatever the policy
        ("skip", 5, 80 * S, 90 * S + 5, 9, (90 * S,)),
        ("run_latest", 5, 80 * S, 97 * S, 16, (97 * S,)),
        ("run_all", 5, 80 * S, 97 * S, 11, tuple(range(92 * S, 98 * S, S))),
        # nothing due
        ("run_all", 60, 100 * S, 100 * S + 500, 0, ()),
    ],
)
def test_plan_ticks_applies_misfire_policy(misfire: str, window: int, last: int, now: int,
                                           skip: int, run: tuple[int, ...]) -> None:
    plan = plan_ticks(EVERY_SECOND, job(misfire=misfire, misfire_window=window), last=last,
                      now=now, on_time_ms=2000)
    assert plan.skip_count == skip
    assert plan.run == run
    if skip:
        assert plan.skip_first == last + S
        assert plan.skip_until is not None
        assert all(t > plan.skip_until for t in plan.run)


@pytest.mark.parametrize(
    ("misfire", "run"), [("skip", ()), ("run_latest", (100 * S,)), ("run_all", (100 * S,))])
def test_late_newest_tick_runs_only_if_the_policy_catches_up(misfire: str,
                                                            run: tuple[int, ...]) -> None:
    every_ten = CronSchedule.parse("*/10 * * * * *")
    plan = plan_ticks(every_ten, job(misfire=misfire, misfire_window=60), last=90 * S,
                      now=105 * S, on_time_ms=2000)
    assert plan.run == run
    assert plan.skip_count == (1 if misfire == "skip" else 0)


def test_plan_caps_enumeration_of_a_long_outage() -> None:
    plan = plan_ticks(EVERY_SECOND, job(misfire="skip", misfire_window=10), last=0,
                      now=100_000 * S, on_time_ms=2000, cap=1000)
    assert plan.skip_count >= 1000
    assert plan.skip_until is not None and plan.skip_until >= 100_000 * S - 11 * S
    assert plan.run == (100_000 * S,)  # the newest tick is on time


def test_forbid_claim_is_one_txn_with_nested_lock() -> None:
    keys = Keyspace("/c")
    compare, success, failure = build_claim(keys, job(), 5 * S, Ticket("j@5000", b"i", 7, "w1/3"))
    assert compare == [Compare.value("/c/last/j", "<", encode_tick(5 * S))]
    assert success[0] == Put("/c/last/j", encode_tick(5 * S, "w1/3"))
    assert isinstance(success[1], Txn)
    assert success[1].compare == (Compare.absent("/c/lock/j"),)
    assert failure == [Get("/c/last/j")]


def _kv(key: str, value: bytes) -> KeyValue:
    return KeyValue(key, value, 1, 1, 1)


def test_read_claim_outcomes() -> None:
    forbid = job()
    won = TxnResult(True, 10, [], [TxnResult(True, 10)])
    assert read_claim(forbid, won).outcome is Outcome.WON
    holder = _kv("/c/lock/j", b'{"run_id":"j@1"}')
    busy = TxnResult(True, 10, [], [TxnResult(False, 10, [[holder]])])
    claim = read_claim(forbid, busy)
    assert claim.outcome is Outcome.SKIP
    assert claim.holder == {"run_id": "j@1"}
    taken = TxnResult(False, 10, [[_kv("/c/last/j", encode_tick(9 * S, "w2/1"))]])
    claim = read_claim(forbid, taken)
    assert claim.outcome is Outcome.TAKEN
    assert claim.last_tick == 9 * S


def test_claimant_suffix_keeps_token_order() -> None:
    claimed = encode_tick(5 * S, "worker-9/12")
    assert claimed > encode_tick(5 * S)  # the same tick cannot be claimed again
    assert claimed < encode_tick(5 * S + 1)  # the next one can
    assert claimed < encode_tick(6 * S, "a")


def test_a_start_marker_stops_every_claim_and_keeps_the_token_s_floor() -> None:
    marker = restart_token(encode_tick(5 * S, "w1/3"), "n1")
    assert start_floor(marker) == 5 * S
    assert start_floor(encode_tick(5 * S, "w1/3")) is None
    # No claim passes it, however late its tick: a plan made before the write fails.
    assert marker > encode_tick(10**16 - 2)
    # Written over a marker, the floor stays; over nothing, it is 0.
    assert start_floor(restart_token(marker, "n2")) == 5 * S
    assert start_floor(restart_token(None, "n3")) == 0
    assert restart_token(marker, "n2") != restart_token(marker, "n4")  # each one new
    with pytest.raises(ValueError, match="out of range"):
        encode_start(-1, "n")


def test_rendezvous_owner_is_stable_and_moves_only_lost_keys() -> None:
    workers = [f"w{i}" for i in range(5)]
    owners = {f"job{i}": rendezvous_owner(f"job{i}", workers) for i in range(200)}
    assert owners == {k: rendezvous_owner(k, list(reversed(workers))) for k in owners}
    assert len(set(owners.values())) == 5
    survivors = [w for w in workers if w != "w2"]
    for key, owner in owners.items():
        new = rendezvous_owner(key, survivors)
        if owner != "w2":
            assert new == owner
    assert rendezvous_owner("x", []) is None


@pytest.mark.parametrize("misfire", ["skip", "run_latest", "run_all"])
@pytest.mark.parametrize("schedule", ["* * * * * *", "*/5 * * * * *"])
def test_still_due_agrees_with_a_fresh_plan(misfire: str, schedule: str) -> None:
    """A tick is still due at ``now`` exactly when a plan made then would run it."""
    cron = CronSchedule.parse(schedule)
    the_job = job(misfire=misfire, misfire_window=7, schedule=schedule)
    last = 100 * S
    checked = 0
    for now in range(last, last + 20 * S, 250):
        plan = plan_ticks(cron, the_job, last=last, now=now, on_time_ms=2000)
        for tick in cron.fires_between(last, now):
            due = still_due(cron, the_job, tick, now=now, on_time_ms=2000)
            assert due == (tick in plan.run), (tick, now)
            checked += 1
    assert checked > 50


@pytest.mark.parametrize(("misfire", "late_ms", "runs"), [
    ("skip", 2000, True), ("skip", 2001, False),
    ("run_latest", 2500, True), ("run_latest", 7000, True), ("run_latest", 7001, False),
    ("run_all", 7000, True), ("run_all", 7001, False),
])
def test_a_claim_back_late_runs_only_inside_its_limit(misfire: str, late_ms: int,
                                                       runs: bool) -> None:
    the_job = job(misfire=misfire, misfire_window=7)
    assert in_time(the_job, 100 * S, now=100 * S + late_ms, on_time_ms=2000) is runs


def test_run_all_beyond_the_cap_runs_the_newest_and_skips_the_rest_on_record() -> None:
    # 1,500 ticks inside the misfire window, at most 1,000 run: the 500 older
    # ones are skipped with a record, not dropped without one.
    plan = plan_ticks(EVERY_SECOND, job(misfire="run_all", misfire_window=3600), last=0,
                      now=1500 * S, on_time_ms=2000, cap=1000)
    assert plan.run == tuple(range(501 * S, 1501 * S, S))
    assert (plan.skip_first, plan.skip_until, plan.skip_count) == (1 * S, 500 * S, 500)
