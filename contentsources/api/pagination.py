"""Collections answer `{"data": [...], "meta": {"count", "limit", "offset"}, "links": {"first",
"last", "next", "prev"}}`, with the original's rules: `limit` 100 by default (0 too), at most
MAX_LIMIT; links to the first, last, next and previous pages, with the request's other
parameters. A limit or offset that is not a non-negative integer is a 400 (the original let
them through)."""

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from django.db.models import QuerySet
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class Envelope(BasePagination):
    def paginate_queryset(
        self, queryset: QuerySet[Any, Any] | Sequence[Any], request: Request, view: Any = None
    ) -> list[Any]:
        assert isinstance(queryset, QuerySet), "the envelope pages querysets"
        self.request = request
        self.limit = _parameter(request, "limit", DEFAULT_LIMIT) or DEFAULT_LIMIT
        self.limit = min(self.limit, MAX_LIMIT)
        self.offset = _parameter(request, "offset", 0)
        if self.offset == 0:
            page = list(queryset[: self.limit])
        else:
            # The page's keys first, then its rows: what each row carries (a task's object and
            # dependencies, subqueries) is then computed for the page only, not for every row
            # skipped before it (3.4 s at offset 90,000 of 100,000 tasks, bench/api_tasks.py).
            keys = queryset.values("pk")[self.offset : self.offset + self.limit]
            page = list(queryset.filter(pk__in=keys))
        # A page that is not full is the last one: the count follows, with no query (most
        # collections fit in their first page).
        if 0 < len(page) < self.limit or (self.offset == 0 and not page):
            self.count = self.offset + len(page)
        else:
            self.count = queryset.count()
        return page

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            OrderedDict(
                [
                    ("data", data),
                    ("meta", {"count": self.count, "limit": self.limit, "offset": self.offset}),
                    ("links", self._links()),
                ]
            )
        )

    def _links(self) -> dict[str, str]:
        count, limit, offset = self.count, self.limit, self.offset
        if count > 0 and count % limit == 0:
            last = count - limit
        else:
            last = count - count % limit
        links = {"first": self._link(0), "last": self._link(last)}
        if offset + limit < count:
            links["next"] = self._link(offset + limit)
        if offset - limit >= 0:  # past the end, the page before is the last one
            links["prev"] = self._link(min(offset - limit, last))
        return links

    def _link(self, offset: int) -> str:
        # Every other parameter as given, repeated ones included, keys sorted as the original's.
        query = [
            (key, value)
            for key, values in self.request.query_params.lists()
            if key not in ("limit", "offset")
            for value in values
        ]
        query += [("limit", str(self.limit)), ("offset", str(offset))]
        return f"{self.request.path}?{urlencode(sorted(query, key=lambda item: item[0]))}"

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        link = {"type": "string"}
        return {
            "type": "object",
            "required": ["data", "meta", "links"],
            "properties": {
                "data": schema,
                "meta": {
                    "type": "object",
                    "required": ["count", "limit", "offset"],
                    "properties": {name: {"type": "integer"} for name in ("count", "limit", "offset")},
                },
                "links": {
                    "type": "object",
                    "required": ["first", "last"],
                    "properties": {name: link for name in ("first", "last", "next", "prev")},
                },
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "description": f"items a page: {DEFAULT_LIMIT} by default (0 too), at most {MAX_LIMIT}",
                "schema": {"type": "integer", "minimum": 0},
            },
            {
                "name": "offset",
                "in": "query",
                "required": False,
                "description": "items to skip",
                "schema": {"type": "integer", "minimum": 0},
            },
        ]


def _parameter(request: Request, name: str, default: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise ValidationError({name: [f"must be a non-negative integer, not {text[:20]!r}"]})
    return int(text)
