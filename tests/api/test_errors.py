"""Every 4xx and 5xx answers `{"errors": [{"status", "title", "detail"}]}`, whatever refused
the request: a view, DRF's parsing, Django before any view."""

import uuid

import pytest
from django.core.exceptions import PermissionDenied
from django.test import RequestFactory
from rest_framework.test import APIClient

from contentsources.api import errors
from tests.api.conftest import API
from tests.api.factories import ConfigurationFactory, TaskFactory


def envelope(response, status: int) -> list[str]:
    """The details of an error answer, once its status and shape are checked."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"errors"} and body["errors"], body
    for error in body["errors"]:
        assert set(error) == {"status", "title", "detail"}, error
        assert error["status"] == status and error["title"] and error["detail"], error
    return [error["detail"] for error in body["errors"]]


def test_a_validation_error_names_each_field(api):
    response = api.post(f"{API}repositories/", {"distribution_arch": "sparc"}, format="json")

    assert sorted(envelope(response, 400)) == [
        'distribution_arch: "sparc" is not a valid choice.',
        "name: This field is required.",
        "url: This field is required.",
    ]


def test_the_domain_s_validation_names_its_field(api):
    response = api.post(f"{API}repositories/", {"name": "r", "url": "ftp://mirror.example/"}, format="json")

    assert envelope(response, 400) == ["url: url must start with http:// or https://, not 'ftp://mirror.example/'"]


def test_errors_in_a_list_name_the_position_and_the_field(api):
    response = api.post(
        f"{API}repositories/bulk_create/", [{"name": "a", "url": "https://a/"}, {"name": 5}], format="json"
    )

    assert envelope(response, 400) == ["1.url: This field is required."]


def test_malformed_json_is_a_400(api):
    response = api.post(f"{API}repositories/", '{"name": "r",', content_type="application/json")

    [detail] = envelope(response, 400)
    assert detail.startswith("JSON parse error")


def test_json_that_is_not_an_object_is_a_400(api):
    assert envelope(api.post(f"{API}repositories/", "[1]", content_type="application/json"), 400) == [
        "Invalid data. Expected a dictionary, but got list."
    ]
    deep = "[" * 100_000 + "]" * 100_000
    assert envelope(api.post(f"{API}repositories/", deep, content_type="application/json"), 400) == [
        "JSON parse error - the document is nested too deeply"
    ]


def test_a_body_that_is_not_json_is_a_415(api):
    response = api.post(f"{API}repositories/", "name=r", content_type="application/x-www-form-urlencoded")

    assert envelope(response, 415) == ['Unsupported media type "application/x-www-form-urlencoded" in request.']


def test_a_body_over_the_limit_is_a_413(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = api.post(f"{API}repositories/", {"name": "r" * 2000, "url": "https://a/"}, format="json")

    assert envelope(response, 413) == ["the request body is larger than 1000 bytes"]


def test_an_unknown_method_is_a_405(api):
    assert envelope(api.put(f"{API}repositories/{uuid.uuid4()}/", {}, format="json"), 405) == [
        'Method "PUT" not allowed.'
    ]
    assert envelope(api.delete(f"{API}tasks/{uuid.uuid4()}/"), 405)


def test_an_unknown_path_is_a_404(api):
    assert envelope(api.get(f"{API}nothing/here/"), 404) == [f"no such endpoint: {API}nothing/here/"]
    # Without its slash, a path is redirected to the route (Django's APPEND_SLASH).
    assert api.get(f"{API}tasks")["Location"] == f"{API}tasks/"


@pytest.mark.parametrize("debug", [False, True])
def test_a_post_without_the_trailing_slash_is_a_404_naming_the_route(api, settings, debug):
    # Not Django's redirect, which would lose the body, nor its RuntimeError under DEBUG.
    settings.DEBUG = debug
    response = api.post(f"{API}repositories", {"name": "a", "url": "https://example.com/a/"}, format="json")

    assert envelope(response, 404) == [f"no such endpoint: {API}repositories (did you mean {API}repositories/?)"]
    assert envelope(api.delete(f"{API}tasks/{uuid.uuid4()}"), 404)


def test_a_host_django_does_not_serve_is_a_400(api):
    response = api.get(f"{API}tasks/", HTTP_HOST="evil.example")

    assert envelope(response, 400) == ["the request cannot be served as sent"]


def test_conflicts_are_409(api):
    configuration = ConfigurationFactory()
    path = f"{API}repositories/{configuration.uuid}/introspect/"
    task_id = api.post(path).json()["uuid"]

    assert envelope(api.post(path), 409) == [f"task {task_id} is already pending or running"]


def test_identity_errors_are_enveloped(db):
    assert envelope(APIClient().get(f"{API}tasks/"), 401) == ["the x-rh-identity header is missing"]


@pytest.mark.parametrize(
    "path",
    [
        "repositories/not-a-uuid/",
        "repositories/not-a-uuid/introspect/",
        "repositories/not-a-uuid/snapshot/",
        "repositories/not-a-uuid/snapshots/",
        "tasks/not-a-uuid/",
        "tasks/not-a-uuid/cancel/",
    ],
)
def test_a_malformed_uuid_in_a_path_is_a_400(api, path):
    method = api.post if path.endswith(("introspect/", "snapshot/", "cancel/")) else api.get

    assert envelope(method(f"{API}{path}"), 400) == ["uuid: not a UUID: 'not-a-uuid'"]


def test_a_malformed_uuid_in_a_path_is_a_400_for_every_method(api):
    assert envelope(api.patch(f"{API}repositories/123/", {}, format="json"), 400) == ["uuid: not a UUID: '123'"]
    assert envelope(api.delete(f"{API}repositories/123/"), 400) == ["uuid: not a UUID: '123'"]


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("tasks/?repository_uuid=nope", "repository_uuid: not a UUID: 'nope'"),
        ("tasks/?repository_uuid=", "repository_uuid: not a UUID: ''"),
        ("tasks/?type=a%00b", "type: must be at most 255 printable characters"),
        ("tasks/?status=pending%00", "status: must be at most 2048 printable characters"),
        ("tasks/?status=,,", "status: names no status: ',,'"),
        ("tasks/?status=%20,%20", "status: names no status: ' , '"),
        (
            "tasks/?status=done",
            "status: unknown status 'done'; use some of pending, running, completed, failed, canceled",
        ),
        ("repositories/?name=%00", "name: must be at most 2048 printable characters"),
        ("repositories/?search=a%00", "search: must be at most 2048 printable characters"),
        ("repositories/?url=%00", "url: must be at most 2048 printable characters"),
        ("repositories/?url=ftp://a/", "url: url must start with http:// or https://, not 'ftp://a/'"),
        ("repositories/?status=", "status: must be one of Pending, Valid, Invalid, Unavailable, not ''"),
        ("repositories/?status=valid", "status: must be one of Pending, Valid, Invalid, Unavailable, not 'valid'"),
        (
            "repositories/?ordering=uuid",
            "ordering: must be one of name, url, status, package_count, created_at, -name, -url, -status,"
            " -package_count, -created_at, not 'uuid'",
        ),
    ],
)
def test_a_bad_filter_is_a_400_never_a_500(api, query, detail):
    TaskFactory()
    ConfigurationFactory()

    assert envelope(api.get(f"{API}{query}"), 400) == [detail]


def test_an_unexpected_error_is_a_500_in_the_envelope_and_logged(caplog):
    request = RequestFactory().get(f"{API}tasks/")

    response = errors.handle_exception(RuntimeError("a bug"), {"request": request})

    assert response.status_code == 500
    assert response.data == {
        "errors": [
            {
                "status": 500,
                "title": "Internal Server Error",
                "detail": "an unexpected error occurred; it has been logged",
            }
        ]
    }
    assert "unexpected error answering /api/content-sources/v1/tasks/" in caplog.text
    assert "RuntimeError: a bug" in caplog.text


def test_django_s_own_500_is_in_the_envelope():
    response = errors.server_error(RequestFactory().get(f"{API}tasks/"))

    assert response.status_code == 500
    assert response.content == (
        b'{"errors": [{"status": 500, "title": "Internal Server Error", '
        b'"detail": "an unexpected error occurred; it has been logged"}]}'
    )


def html_page(response, status: int) -> str:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("text/html"), response["Content-Type"]
    return response.content.decode()


def test_outside_the_api_errors_are_django_s_html_pages(admin_client):
    assert "Not Found" in html_page(admin_client.get("/admin/nothing/"), 404)
    assert "Not Found" in html_page(admin_client.get("/nothing/here/"), 404)
    assert "Bad Request" in html_page(admin_client.get("/admin/", HTTP_HOST="evil.example"), 400)
    assert "Server Error" in html_page(errors.server_error(RequestFactory().get("/admin/")), 500)
    assert "Forbidden" in html_page(errors.permission_denied(RequestFactory().get("/admin/"), PermissionDenied()), 403)
