"""Cron expressions in words: common shapes described, everything else left raw."""

import pytest

from cronswarm.common import describe


@pytest.mark.parametrize(("expr", "words"), [
    ("* * * * * *", "every second"),
    ("*/5 * * * * *", "every 5 seconds"),
    ("*/1 * * * * *", "every second"),
    ("0 * * * * *", "every minute"),
    ("* * * * *", "every minute"),
    ("15 * * * * *", "every minute at second 15"),
    ("*/10 * * * *", "every 10 minutes"),
    ("0 */15 * * * *", "every 15 minutes"),
    ("0 * * * *", "every hour"),
    ("@hourly", "every hour"),
    ("5 * * * *", "every hour at minute 5"),
    ("0 */6 * * *", "every 6 hours"),
    ("30 */2 * * *", "every 2 hours at minute 30"),
    ("30 2 * * *", "at 02:30 daily"),
    ("0 30 2 * * *", "at 02:30 daily"),
    ("45 30 2 * * *", "at 02:30:45 daily"),
    ("@daily", "at 00:00 daily"),
    ("@midnight", "at 00:00 daily"),
    ("0 9,17 * * *", "at 09:00 and 17:00 daily"),
    ("0 8,12,18 * * *", "at 08:00, 12:00 and 18:00 daily"),
    ("0 9 * * 1-5", "at 09:00 on weekdays"),
    ("0 9 * * MON-FRI", "at 09:00 on weekdays"),
    ("0 10 * * sat,sun", "at 10:00 on weekends"),
    ("0 10 * * 6,0", "at 10:00 on weekends"),
    ("0 0 * * 1", "at 00:00 on Monday"),
    ("@weekly", "at 00:00 on Sunday"),
    ("0 0 * * 7", "at 00:00 on Sunday"),
    ("0 0 * * 1,3", "at 00:00 on Monday and Wednesday"),
    ("0 0 1 * *", "at 00:00 on day 1 of the month"),
    ("@monthly", "at 00:00 on day 1 of the month"),
    ("0 0 1,15 * *", "at 00:00 on days 1 and 15 of the month"),
    ("@yearly", "at 00:00 on 1 January"),
    ("0 9 24 12 *", "at 09:00 on 24 December"),
    ("0 12 * 1,7 *", "at 12:00 in January and July"),
    ("0 12 * jan *", "at 12:00 in January"),
    ("*/5 * * * * 1-5", "every 5 seconds on weekdays"),
    ("  30   2 * * *  ", "at 02:30 daily"),
])
def test_common_shapes_in_words(expr: str, words: str) -> None:
    assert describe(expr) == words


@pytest.mark.parametrize("expr", [
    "*/7 * * * * *",  # 7 does not divide 60: the gap at each minute's wrap is not 7 s
    "0 */5 * * *",  # nor 5 the hours of a day
    "0,30 * * * * *",  # several seconds
    "0 9 1 * 1",  # day of month OR weekday: too subtle for one phrase
    "0 0 L * *",  # croniter extensions
    "0 0 * * 1#2",
    "0-30/5 * * * *",  # a stepped range
    "0 0,1,2,3,4,5,6 * * *",  # a list too long to read
    "0 9 * * 1-7",
    "5-10 * * * *",
    "H * * * *",
    "61 * * * *",  # out of range: the validator reports it, not this
    "* * *",
    "",
])
def test_unusual_shapes_stay_raw(expr: str) -> None:
    assert describe(expr) == " ".join(expr.split())
