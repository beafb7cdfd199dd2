"""A page of the API is freed by reference counting once sent, not left in reference cycles
for the garbage collector's full collections, whose pauses grow with what they find (the tail
of bench/api_tasks.py). Through Django's WSGI handler, as gunicorn calls it: the test client
adds cycles of its own."""

import gc
import io
import json
import os
import subprocess
import sys
import weakref

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from contentsources.api.identity import encode_identity
from tasks.models import TaskDependency
from tests.api.conftest import API
from tests.api.factories import ORG_A, ConfigurationFactory, RepositoryTaskFactory
from tests.helpers import ROOT

PAGE = 30


@pytest.fixture
def handler(db):
    """The WSGI handler, which leaves the test's connection open as the test client does."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield WSGIHandler()
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def collector_off():
    gc.collect()
    gc.disable()
    yield
    gc.enable()


def get(handler: WSGIHandler, path: str, query: str = ""):
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "localhost",
        "HTTP_X_RH_IDENTITY": encode_identity(org_id=ORG_A),
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": "http",
    }
    statuses = []
    response = handler(environ, lambda status, headers: statuses.append(status))
    body = b"".join(response)
    response.close()
    assert statuses == ["200 OK"], body[:500]
    return response, json.loads(body)


def test_a_page_of_tasks_is_freed_once_sent(handler, collector_off):
    previous = None
    for _ in range(PAGE):
        task = RepositoryTaskFactory(configuration=ConfigurationFactory(org_id=ORG_A))
        if previous is not None:
            TaskDependency.objects.create(task=task, dependency=previous)
        previous = task
    get(handler, f"{API}tasks/")  # warm
    gc.collect()  # the factories' garbage

    response, body = get(handler, f"{API}tasks/")
    assert len(body["data"]) == PAGE
    sent = weakref.ref(response)
    del response
    assert sent() is None, "the response is kept by a reference cycle"
    # What is left for the collector (DRF's request and view) grows by less than an object an
    # item of the page, where each item left 6 and more: its dict, its lists, its UUIDs.
    assert left_a_request(handler, f"limit={PAGE}") - left_a_request(handler, "limit=1") < PAGE


def left_a_request(handler: WSGIHandler, query: str) -> float:
    requests = 5
    for _ in range(requests):
        get(handler, f"{API}tasks/", query)
    return gc.collect() / requests


def test_the_served_application_keeps_what_it_loaded_out_of_full_collections():
    # A fresh process, as a gunicorn worker loads the application.
    probe = (
        "import gc, sys; import contentsources.wsgi; "
        "print(gc.get_freeze_count() > 10_000, 'contentsources.api.tasks' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "contentsources.settings", "SECRET_KEY": "test"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]
