"""One logging setup: structlog, JSON lines, with the request, event and trace ids bound as context."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

import structlog

from . import tracing

_configured = False

# Libraries that log every retry of a connection while a peer is away.
_CHATTY_LIBRARIES = ("aiokafka",)
REPEAT_WINDOW_S = 300.0


class RepeatFilter(logging.Filter):
    """Lets each warning of a chatty library through once per `window_s`.

    While the broker is away aiokafka logs every reconnection attempt, thousands of lines a minute; an outage
    should show as a line when it starts (this filter keeps the first of each kind) and a line when it ends
    (our components log that), not as its retries.
    """

    def __init__(self, window_s: float = REPEAT_WINDOW_S, libraries: tuple[str, ...] = _CHATTY_LIBRARIES) -> None:
        super().__init__()
        self.window_s = window_s
        self.libraries = libraries
        self._last: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.libraries):
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.window_s:
            return False
        if len(self._last) > 1000:  # templates, not messages, are keys: only a bug would grow it this far
            self._last.clear()
        self._last[key] = now
        return True


# The event the inbox applies now, as (event id, trace id): named on every line logged meanwhile. One context
# variable set per event, where binding both through structlog would set and reset two.
applying_event: ContextVar[tuple[str, str] | None] = ContextVar("ceper_applying_event", default=None)


def add_event_ids(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the ids of the event being applied, unless the line names its own."""
    ids = applying_event.get()
    if ids is not None:
        event_dict.setdefault("event_id", ids[0])
        event_dict.setdefault("trace_id", ids[1])
    return event_dict


def configure_logging(service: str, level: str = "INFO", json: bool = True) -> None:
    global _configured
    shared_processors: list[structlog.types.Processor] = [
        add_event_ids,  # before the bound context: the event is applied within whatever bound it
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        tracing.add_trace_ids,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared_processors, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    # Library logs (uvicorn, aiokafka, alembic) go through the same renderer, so every line is JSON.
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    structlog.contextvars.bind_contextvars(service=service)
    _configured = True


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
