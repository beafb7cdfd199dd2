"""Django's CommonMiddleware, but a path without its trailing slash is redirected for GET and
HEAD only. A redirect would lose any other method's body (Django raises a RuntimeError for
them under DEBUG, and its 301 turns them into a GET elsewhere): they get a 404 in the errors
envelope that names the path with its slash."""

from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.middleware.common import CommonMiddleware

from contentsources.api.errors import errors

REDIRECTED = ("GET", "HEAD")


class SlashMiddleware(CommonMiddleware):
    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if (
            response.status_code == 404
            and request.method not in REDIRECTED
            and super().should_redirect_with_slash(request)
        ):
            detail = f"no such endpoint: {request.path} (did you mean {request.path}/?)"
            response = JsonResponse(errors(404, detail), status=404)
        return super().process_response(request, response)

    def should_redirect_with_slash(self, request: HttpRequest) -> bool:
        return request.method in REDIRECTED and bool(super().should_redirect_with_slash(request))
