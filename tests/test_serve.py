"""`manage.py serve`, the command behind `make run`, as a real process on 127.0.0.1."""

import json
import os
import re
import signal
import socket
import subprocess
import sys

import pytest
import requests
from django.contrib.auth import get_user_model

from contentsources.api.request_id import HEADER
from tests.helpers import ROOT, database_url, wait_until

# How many admin pages are read after the login, each while another connection keeps one of
# the two web workers busy, so that about half of them go to the worker the login missed.
ROUNDS = 12


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def served(transactional_db, tmp_path):
    """`manage.py serve` with two web workers and no SECRET_KEY, as the local demo runs it
    (DEBUG stands for the embedded database: the same settings make a key then); its base URL."""
    port = free_port()
    env = {name: value for name, value in os.environ.items() if name not in ("SECRET_KEY", "SECRET_KEY_FILE")}
    env.update(DATABASE_URL=database_url(), DEBUG="true", DJANGO_SETTINGS_MODULE="contentsources.settings")
    env["SNAPSHOT_STORAGE_OPTIONS"] = json.dumps({"location": str(tmp_path / "snapshots")})
    command = [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{port}", "--web-workers", "2"]
    with open(tmp_path / "serve.log", "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{base}/healthz") or process.poll() is not None, timeout=60, message="serve")
        assert process.poll() is None, (tmp_path / "serve.log").read_text()
        yield base, env
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def test_an_admin_login_holds_on_every_web_worker_of_the_demo(served):
    served, _ = served
    get_user_model().objects.create_superuser("operator", password="a-long-test-password")
    session = requests.Session()
    login = f"{served}/admin/login/"
    form = session.get(login, timeout=10)
    token = form.text.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
    response = session.post(
        login,
        data={
            "username": "operator",
            "password": "a-long-test-password",
            "csrfmiddlewaretoken": token,
            "next": "/admin/",
        },
        headers={"Referer": login},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    for _ in range(ROUNDS):
        # A connection that sends half a request keeps the worker that takes it waiting.
        with socket.create_connection(("127.0.0.1", int(served.rsplit(":", 1)[1])), timeout=10) as busy:
            busy.sendall(b"GET /healthz HTTP/1.1\r\n")
            page = session.get(f"{served}/admin/", allow_redirects=False, timeout=10, headers={"Connection": "close"})
        assert page.status_code == 200, "a web worker refused the session another one made"


def test_the_readme_s_curl_session_works(served, tmp_path):
    """The README's API session and its cancel, as written but for the two ports."""
    base, env = served
    port = free_port()
    with open(tmp_path / "repository.log", "wb") as log:
        upstream = subprocess.Popen(
            [sys.executable, "scripts/demo_repository.py", "--port", str(port)], cwd=ROOT, stdout=log, stderr=log
        )
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/repodata/repomd.xml"), message="the demo repository")
        readme = (ROOT / "README.md").read_text()
        session = readme[readme.index("Or through the API") :]
        blocks = re.findall(r"```sh\n(.*?)```", session, re.DOTALL)[:2]
        script = "\n".join(blocks).replace("127.0.0.1:8000", base.removeprefix("http://"))
        script = script.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        ran = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script + '\necho "REPO=$REPO"'],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)
    assert ran.returncode == 0, ran.stderr
    repository = ran.stdout.rsplit("REPO=", 1)[1].strip()
    assert re.search(rf'"object_uuid":"{repository}","object_name":"demo"', ran.stdout), ran.stdout
    assert '"url":"http://127.0.0.1:' in ran.stdout and '"package_count"' in ran.stdout
    # The cancel: 204, then the task is canceled, then a second cancel is a 409.
    assert re.search(r'204\n\{[^\n]*"status":"canceled"[^\n]*\}409\n', ran.stdout), ran.stdout


def test_an_access_line_carries_the_request_s_id(served, tmp_path):
    """gunicorn's access lines end with the request id the response echoes (given or made up),
    so that they can be found with the request's other lines and its tasks'."""
    base, _ = served
    given = requests.get(f"{base}/api/content-sources/v1/openapi.json", headers={HEADER: "serve-test-1"}, timeout=10)
    made_up = requests.get(f"{base}/api/content-sources/v1/openapi.json", timeout=10).headers[HEADER]
    log = tmp_path / "serve.log"
    for request_id in ("serve-test-1", made_up):
        wait_until(
            lambda request_id=request_id: (
                '"GET /api/content-sources/v1/openapi.json HTTP/1.1" 200 ' in log.read_text()
                and f"request_id={request_id}\n" in log.read_text()
            ),
            message=f"the access line of request {request_id}",
        )
    assert given.headers[HEADER] == "serve-test-1"
