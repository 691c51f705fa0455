"""One partition per uploaded batch (an inbox folder or an upload API call)."""

from dagster import DynamicPartitionsDefinition

# The name on its own, for instance calls: the definition's ``name`` is optional (a str | None).
BATCHES = "batches"
batches = DynamicPartitionsDefinition(name=BATCHES)
