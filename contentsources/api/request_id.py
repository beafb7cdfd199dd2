"""The request id: `x-rh-insights-request-id` as the gateway sends it, or one made up. It is
echoed on the response, stored on every task the request enqueues, and on every log line of
the request (through tasks.log.current_request_id) and of those tasks."""

import re
import uuid
from collections.abc import Callable
from typing import Any

from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponse

from tasks.log import current_request_id

HEADER = "x-rh-insights-request-id"
_ACCEPTED = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def request_id_of(request: HttpRequest) -> str:
    """The request's id, as RequestIdMiddleware set it."""
    return getattr(request, "request_id", None) or str(uuid.uuid4())


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.headers.get(HEADER, "")
        # Anything else (too long, odd characters) is replaced: it goes into logs and the queue.
        request_id = given if _ACCEPTED.match(given) else str(uuid.uuid4())
        # HttpRequest declares no such attribute; request_id_of reads it back.
        request.request_id = request_id  # type: ignore[attr-defined]
        # Kept until the response is closed, not just until this returns: Django logs a 4xx or
        # 5xx ("Bad Request: ...") after the middleware chain has returned.
        current_request_id.set(request_id)
        response = self.get_response(request)
        response[HEADER] = request_id
        return response


def _forget_request_id(**kwargs: Any) -> None:
    current_request_id.set(None)


request_finished.connect(_forget_request_id, dispatch_uid="contentsources.api.request_id")
