import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from tasks.conf import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("1.5", 1.5), ("500ms", 0.5), ("1m", 60), ("12h", 43200), ("2d", 172800), (" 3s ", 3)],
)
def test_durations_read_like_the_originals(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1x", "-1s", "1h30m", "soon"])
def test_a_bad_duration_says_what_is_accepted(text):
    with pytest.raises(ValueError, match="use seconds, or a number with ms, s, m, h or d"):
        parse_duration(text)


def test_a_pool_limit_below_the_workers_needs_is_a_check_error(settings):
    settings.TASKING = {**settings.TASKING, "WORKER_COUNT": 30, "POOL_LIMIT": 20}
    with pytest.raises(SystemCheckError, match=r"TASKING_POOL_LIMIT \(20\) is below what 30 workers need \(35"):
        call_command("check")
