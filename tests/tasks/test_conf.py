import math

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from tasks.conf import TaskingSettings, from_environment, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("1.5", 1.5), ("500ms", 0.5), ("1m", 60), ("12h", 43200), ("2d", 172800), (" 3s ", 3)],
)
def test_durations_read_like_the_originals(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1x", "-1s", "1h30m", "soon", "1" + "0" * 400, "100000000d"])
def test_a_bad_duration_says_what_is_accepted(text):
    with pytest.raises(ValueError, match="use seconds, or a number with ms, s, m, h or d|at most a year"):
        parse_duration(text)


def test_a_pool_limit_below_the_workers_needs_is_a_check_error(settings):
    settings.TASKING = {**settings.TASKING, "WORKER_COUNT": 30, "POOL_LIMIT": 20}
    with pytest.raises(SystemCheckError, match=r"TASKING_POOL_LIMIT \(20\) is below what 30 workers need \(35"):
        call_command("check")


def test_an_unknown_tasking_key_is_a_check_error_naming_it(settings):
    settings.TASKING = {**settings.TASKING, "HEARTBEET": 5.0}
    message = r"tasks.E005.*unknown key 'HEARTBEET'; the known keys are [A-Z_, ]*HEARTBEAT"
    with pytest.raises(SystemCheckError, match=message):
        call_command("check")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("HEARTBEAT", "60s"),
        ("WORKER_COUNT", 2.5),
        ("SHUTDOWN_GRACE", math.inf),
        ("SHUTDOWN_GRACE", -1),
        ("PAYLOAD_LIMIT", True),
        ("HEARTBEAT", 10**400),
        ("RETRY_WAIT_UPPER_BOUND", 100_000_000 * 86400.0),
    ],
)
def test_a_mistyped_tasking_value_is_a_check_error(settings, key, value):
    settings.TASKING = {**settings.TASKING, key: value}
    with pytest.raises(SystemCheckError, match=rf"tasks.E006.*TASKING\['{key}'\] \(TASKING_{key}\) must be"):
        call_command("check")


def test_tasking_that_is_not_a_dict_is_a_check_error(settings):
    settings.TASKING = ["HEARTBEAT", 5]
    with pytest.raises(SystemCheckError, match=r"tasks.E007.*TASKING must be a dict, not list"):
        call_command("check")


def test_a_misspelt_tasking_variable_is_a_warning(monkeypatch, capsys):
    monkeypatch.setenv("TASKING_HEARTBEET", "5s")
    call_command("check")
    assert "tasks.W001" in capsys.readouterr().err


def test_the_environment_sets_only_what_it_names_and_the_defaults_live_in_tasks_conf():
    assert from_environment({"TASKING_HEARTBEAT": "2m", "OTHER": "x"}) == {"HEARTBEAT": 120.0}
    assert TaskingSettings().heartbeat == 60.0


def test_a_bad_environment_value_names_its_variable():
    with pytest.raises(ValueError, match=r"^TASKING_WORKER_COUNT: not an integer: 'many'$"):
        from_environment({"TASKING_WORKER_COUNT": "many"})


def test_wakeups_are_listen_unless_the_environment_says_poll():
    assert TaskingSettings().wakeups == "listen"
    assert from_environment({"TASKING_WAKEUPS": "poll", "TASKING_POLL_INTERVAL": "250ms"}) == {
        "WAKEUPS": "poll",
        "POLL_INTERVAL": 0.25,
    }


def test_an_unknown_wakeup_mode_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"^TASKING_WAKEUPS: not a wake-up mode: 'notify' \(use listen or poll\)$"):
        from_environment({"TASKING_WAKEUPS": "notify"})


def test_an_unknown_wakeup_mode_in_settings_is_a_check_error(settings):
    settings.TASKING = {**settings.TASKING, "WAKEUPS": "Poll"}
    with pytest.raises(
        SystemCheckError, match=r"tasks.E006.*TASKING\['WAKEUPS'\] \(TASKING_WAKEUPS\) must be 'listen'"
    ):
        call_command("check")


def test_a_poll_interval_under_10ms_is_a_check_error(settings):
    settings.TASKING = {**settings.TASKING, "POLL_INTERVAL": 0}
    with pytest.raises(SystemCheckError, match=r"tasks.E008.*TASKING_POLL_INTERVAL must be at least 10ms"):
        call_command("check")


def test_an_unknown_wakeup_mode_stops_a_command_with_one_line():
    import subprocess
    import sys

    from tests.helpers import ROOT

    env = {"PATH": "/usr/bin:/bin", "SECRET_KEY": "test", "TASKING_WAKEUPS": "notify"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr == "error: TASKING_WAKEUPS: not a wake-up mode: 'notify' (use listen or poll)\n"


def test_poll_wakeups_on_a_connection_that_prepares_is_a_check_error(settings):
    """TASKING set in code, not from the environment: the database options did not follow."""
    settings.TASKING = {**settings.TASKING, "WAKEUPS": "poll"}
    with pytest.raises(SystemCheckError, match=r"tasks.E009.*TASKING_WAKEUPS is poll, but the database connection"):
        call_command("check")
