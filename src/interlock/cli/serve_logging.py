"""How `interlock serve` logs: Interlock's own lines beside uvicorn's, text or JSON.

Without this, the `interlock.*` loggers had no handler under uvicorn (whose
configuration covers only its own loggers): their warnings reached stderr
through Python's last-resort handler as bare messages, with no time, level or
source, and their info lines never, whatever `--log-level` said. `log_config`
is uvicorn's configuration with an `interlock` logger added at the same level;
uvicorn applies it in every worker process too. `--log-format json` writes one
JSON object a line (time, level, logger, message, and the traceback when there
is one), uvicorn's own lines included, for log collectors; `interlock serve`'s
start line is one of them (`START_LOGGER`), with its facts as fields.

Messages are the ones the code writes, which never hold a key (the tests check
the error and log texts); this module adds no fields from the request. The
access log (`--access-log`) is the exception: uvicorn writes the request line
as the client sent it, so a key put in the URL (`?key=...`, by mistake or by a
client that sends it so) would be written down, even for a request refused
401. `RedactedAccessLines` rewrites the line first: every query value is
replaced (the gateway reads no query parameter worth a log line) and the path
goes through `errors.redact`.

Imports: the standard library, uvicorn (its default configuration), `errors`.
"""

from __future__ import annotations

import copy
import json
import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

from interlock.errors import redact

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The logger of the line that says where the gateway serves, at level info
# whatever --log-level says: an operator needs it as much as an error.
START_LOGGER = "interlock.serving"
# A record's attribute (`extra={FIELDS: {...}}`) holding fields JSON lines add.
FIELDS = "fields"


class JsonLines(logging.Formatter):
    """One JSON object a record, on one line, with the record's `FIELDS` (a
    collector can read the start line's url and workers without parsing text)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        for name, value in getattr(record, FIELDS, {}).items():
            entry.setdefault(name, value)  # never in place of the time, level or message
        return json.dumps(entry, ensure_ascii=False)


class RedactedAccessLines(logging.Filter):
    """uvicorn's access lines, with the request's target redacted. uvicorn logs
    (client, method, path and query, HTTP version, status) as the arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], redacted_target(args[2]), *args[3:])
        return True


def redacted_target(target: str) -> str:
    """A request's path and query with the query's values, and anything in the
    path shaped like a key, replaced by `[redacted]`."""
    path, mark, query = target.partition("?")
    if not mark:
        return redact(path)
    fields = []
    for field in query.split("&"):
        name, equals, _ = field.partition("=")
        fields.append(redact(name) + "=[redacted]" if equals else field and "[redacted]")
    return f"{redact(path)}?{'&'.join(fields)}"


def log_config(level: str, log_format: str = "text") -> dict[str, Any]:
    """uvicorn's logging configuration, with Interlock's loggers at `level` (one of
    uvicorn's level names) written in `log_format`."""
    from uvicorn.config import LOG_LEVELS, LOGGING_CONFIG

    if level.lower() not in LOG_LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LOG_LEVELS)}")
    if log_format not in LOG_FORMATS:
        raise ValueError(f"unknown log format {log_format!r}; use text or json")
    config = copy.deepcopy(LOGGING_CONFIG)
    if log_format == "json":
        for name in config["formatters"]:
            config["formatters"][name] = {"()": f"{__name__}.JsonLines"}
        config["formatters"]["interlock"] = {"()": f"{__name__}.JsonLines"}
    else:
        config["formatters"]["interlock"] = {"format": TEXT_FORMAT}
    config["handlers"]["interlock"] = {"formatter": "interlock", "class": "logging.StreamHandler",
                                       "stream": "ext://sys.stderr"}
    config["loggers"]["interlock"] = {"handlers": ["interlock"], "propagate": False,
                                      "level": LOG_LEVELS[level.lower()]}
    config["loggers"][START_LOGGER] = {"handlers": ["interlock"], "propagate": False,
                                       "level": logging.INFO}
    config.setdefault("filters", {})["redacted_access"] = {
        "()": f"{__name__}.RedactedAccessLines"}
    config["loggers"]["uvicorn.access"]["filters"] = ["redacted_access"]
    return config


def apply(config: dict[str, Any]) -> None:
    """Configure this process' logging with `config` (`log_config`) before the
    gateway is built, so that what loading the config logs is formatted too."""
    logging.config.dictConfig(config)
