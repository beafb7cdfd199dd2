"""The API's one renderer: DRF's JSON, which then undoes the links DRF makes between a response,
its view and itself (the response's renderer context names both, the view holds the response).
They made every response, with all it shows, garbage that only the collector's full
collections free, whose pauses grow with it: freed by reference counting once sent instead,
the tail of a page of 100 tasks no longer waits for them (bench/api_tasks.py)."""

from typing import Any

from rest_framework.renderers import JSONRenderer


class JSON(JSONRenderer):
    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        try:
            return super().render(data, accepted_media_type, renderer_context)
        finally:
            if renderer_context:
                view = renderer_context.get("view")
                if getattr(view, "response", None) is not None:
                    view.response = None
                renderer_context.clear()
