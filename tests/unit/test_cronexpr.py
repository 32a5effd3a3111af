"""The fast evaluator agrees with croniter, which defines the syntax."""

import datetime as dt

import pytest
from croniter import croniter
from hypothesis import given
from hypothesis import strategies as st

from cronswarm.common import ValidationError, validate_expression
from cronswarm.common._cron import is_valid_expression
from cronswarm.common._cronexpr import CronExpr, CroniterExpr, compile_cron


def field(low: int, high: int, names: list[str] | None = None) -> st.SearchStrategy[str]:
    number = st.integers(low, high).map(str)
    if names:
        number = st.one_of(number, st.sampled_from(names))
    # croniter expands a one-value range such as "2-2" to "*" (a bug we do not
    # copy: "2-2" means 2 here), so the generated ranges have two ends.
    rng = st.tuples(st.integers(low, high), st.integers(low, high)).filter(
        lambda t: t[0] != t[1]).map(lambda t: f"{min(t)}-{max(t)}")
    step = st.tuples(st.one_of(st.just("*"), rng, st.integers(low, high).map(str)),
                     st.integers(1, high - low + 1)).map(lambda t: f"{t[0]}/{t[1]}")
    atom = st.one_of(st.just("*"), number, rng, step)
    return st.one_of(atom, st.lists(st.one_of(number, rng), min_size=2, max_size=4).map(",".join))


MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
SIX = st.tuples(field(0, 59), field(0, 59), field(0, 23), field(1, 31), field(1, 12, MONTHS),
                field(0, 7, DAYS)).map(" ".join)
FIVE = st.tuples(field(0, 59), field(0, 23), field(1, 31), field(1, 12, MONTHS),
                 field(0, 7, DAYS)).map(" ".join)
START = st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2035, 1, 1))


def croniter_next(expr: str, start: dt.datetime) -> dt.datetime:
    six = len(expr.split(" ")) == 6
    result: dt.datetime = croniter(expr, start, second_at_beginning=six).get_next(dt.datetime)
    return result


@given(expr=st.one_of(SIX, FIVE), start=START)
def test_agrees_with_croniter(expr: str, start: dt.datetime) -> None:
    valid = croniter.is_valid(expr, second_at_beginning=len(expr.split(" ")) == 6)
    compiled = compile_cron(expr)
    # Compiling standard syntax doubles as validation: it must never accept
    # what croniter rejects.
    assert valid or not isinstance(compiled, CronExpr), expr
    if not valid:
        return
    try:
        expected: dt.datetime | None = croniter_next(expr, start)
    except Exception:
        expected = None
    got = compiled.next_after(start)
    if expected is not None and expected.year > start.year + 5:
        expected = None
    assert got == expected, (expr, start)


@pytest.mark.parametrize(
    ("expr", "kind"),
    [("*/5 * * * *", CronExpr), ("0 0 L * *", CroniterExpr), ("0 0 * * 5#2", CroniterExpr),
     ("0 0 15W * *", CroniterExpr), ("0 22-2 * * *", CroniterExpr), ("@daily", CronExpr),
     ("0 0 * * sat-mon", CroniterExpr)],
)
def test_extended_syntax_is_left_to_croniter(expr: str, kind: type) -> None:
    compiled = compile_cron(expr)
    assert isinstance(compiled, kind)
    start = dt.datetime(2026, 2, 3, 4, 5, 6)
    assert compiled.next_after(start) == croniter_next(expr, start)


def test_day_or_semantics() -> None:
    # The 13th of any month, or any Friday.
    compiled = compile_cron("0 0 13 * 5")
    got = compiled.next_after(dt.datetime(2026, 1, 1))
    assert got == dt.datetime(2026, 1, 2)  # a Friday comes first


def validates(expr: str) -> bool:
    try:
        validate_expression(expr)
    except ValidationError:
        return False
    return True


@given(expr=st.one_of(SIX, FIVE, st.text(alphabet="0123456789*/-,? LW#@adhilmnoruwy",
                                          max_size=24).map(lambda t: " ".join(t.split()))))
def test_the_stored_job_check_accepts_what_validation_accepts(expr: str) -> None:
    assert is_valid_expression(expr) == validates(expr), expr


@pytest.mark.parametrize("expr", [
    "@daily", "@DAILY", "@every", "* * * *", "* * * * * * *", "", "0 0 L * *", "61 * * * *",
    "0 22-2 * * *", "0 0 * * 5#2", "*/0 * * * *", "1 2 3 * * *", "0 0 31 2 *",
])
def test_the_stored_job_check_on_edge_expressions(expr: str) -> None:
    assert is_valid_expression(expr) == validates(expr), expr
