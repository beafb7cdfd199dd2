"""`/healthz`: whether this web process can serve, for probes (the image's HEALTHCHECK, a load
balancer): 200 when the database answers, 503 when it does not within a few seconds.

It asks for no identity and says nothing more than that, so that any probe may call it.
"""

import logging

from django.db import DatabaseError, connection, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)

# The longest the check's query may run; a connect is bounded by the settings' connect_timeout.
STATEMENT_TIMEOUT = "2s"


@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'")
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        logger.warning("health check failed: the database did not answer error=%r", exc)
        return JsonResponse({"status": "unavailable"}, status=503)
    return JsonResponse({"status": "ok"})
