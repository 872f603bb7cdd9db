"""Log output: readable text by default, one JSON object per line when configured.

Every record gets the id of the request (or background job) it was written for
(``homeserver.core.request_id``), as ``[req-id]`` in text and ``"request_id"`` in JSON,
so a request's lines can be found together; "-" when written outside any request.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from homeserver.core import request_id

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
# Attributes every LogRecord has; anything else was passed in ``extra=`` and is kept in JSON.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "request_id"}


class RequestIdFilter(logging.Filter):
    """Stamps the current request id on each record (a filter on the handler, so records
    from every logger, ours and libraries', carry it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.current.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (RFC 3339, UTC), level, logger, request_id, msg, and
    the exception and any ``extra=`` fields when present."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure(level: str, fmt: str = "text") -> None:
    """Set up the root logger once for a process (``log_format``: text or json)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
