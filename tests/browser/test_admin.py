"""The admin in a real browser: an operator logs in, finds the running tasks, cancels one, is
told so, and the worker that ran it stops it.

Headless Chromium from Debian's packages, driven by Playwright for Python with the system
browser (Playwright's own browser download is not used). The browser is installed by the
test's set-up when missing; the test is skipped, saying why, when it cannot be.
"""

import os
import shutil
import subprocess

import pytest

from tasks import client
from tasks.models import Heartbeat, Task
from tests.helpers import wait_until

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "operator-password-for-tests"


@pytest.fixture(scope="session")
def chromium() -> str:
    """The system's Chromium, installed with apt if it is missing and this user can."""
    path = shutil.which("chromium")
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            capture_output=True,
            timeout=900,
        )
        path = shutil.which("chromium")
    if path is None:
        pytest.skip("needs Debian's chromium package, and it could not be installed here (apt-get as root)")
    return path


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser("operator", "operator@example.com", PASSWORD)


def test_an_operator_cancels_a_running_task_and_the_worker_stops_it(chromium, live_server, operator, runworkers):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright for Python (requirements-dev.txt)")
    runworkers("--workers", "2")
    doomed = client.enqueue("diagnostics.sleep", {"seconds": 120})
    spared = client.enqueue("diagnostics.sleep", {"seconds": 120})
    wait_until(
        lambda: Heartbeat.objects.filter(task_id__in=[doomed, spared]).count() == 2,
        timeout=30,
        message="both tasks to run",
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            page.goto(f"{live_server.url}/admin/login/?next=/admin/tasks/task/")
            page.fill("#id_username", "operator")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url("**/admin/tasks/task/")

            page.click("#changelist-filter a:text-is('Running')")
            page.wait_for_url("**status__exact=running**")
            rows = page.locator("#result_list tbody tr")
            assert rows.count() == 2

            page.check(f"input.action-select[value='{doomed}']")
            page.select_option("select[name=action]", "cancel_tasks")
            page.click("button[name=index]")
            message = page.locator("ul.messagelist li").first.inner_text()
            assert message == "Canceled 1 task(s)."

            # The worker stops it: its pool drops the run's heartbeat once the handler returned,
            # and the heartbeat age column empties.
            page.goto(f"{live_server.url}/admin/tasks/task/?status__exact=canceled")
            age = page.locator(f"tr:has(input[value='{doomed}']) td.field-heartbeat_age")

            def stopped() -> bool:
                page.reload()
                return age.inner_text() == "-"

            wait_until(stopped, timeout=10, interval=0.2, message="the worker to stop the canceled task")
        finally:
            browser.close()

    assert not Heartbeat.objects.filter(task_id=doomed).exists()
    assert Task.objects.get(pk=doomed).status == Task.Status.CANCELED
    assert Task.objects.get(pk=spared).status == Task.Status.RUNNING
    client.cancel(spared)
