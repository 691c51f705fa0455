"""The terminal's log: INFO by default, one line per expected gate failure, no stack trace for it.

A blocking gate that fails is an expected outcome, not a crash: the gate logs one line per failed
figure itself, and Dagster's step and run failures that follow would each repeat a stack trace of
``DagsterAssetCheckFailedError``. This console logger keeps the first line of those and drops the
trace; every other record passes unchanged. The run's event log (the UI) keeps everything.
"""

import logging

from dagster import Field, String, logger

GATE_FAILURE = "DagsterAssetCheckFailedError"


class GateTraceFilter(logging.Filter):
    """Cut a gate failure's message to its first line (the stack trace is noise for an expected stop)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if GATE_FAILURE in message:
            first = message.strip().splitlines()[0]
            record.msg, record.args = f"{first} (a blocking gate failed: see its lines above)", ()
        return True


@logger(
    config_schema={"log_level": Field(String, is_required=False, default_value="INFO")},
    description="The terminal log at INFO, gate failures on one line each (no stack trace).",
)
def quiet_console_logger(init_context) -> logging.Logger:
    level = logging.getLevelName(str(init_context.logger_config["log_level"]).upper())
    console = logging.getLogger(f"qwen_dataset.run.{id(init_context)}")
    console.setLevel(level if isinstance(level, int) else logging.INFO)
    console.propagate = False
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    handler.addFilter(GateTraceFilter())
    console.addHandler(handler)
    return console
