"""One partition per uploaded batch (an inbox folder or an upload API call)."""

from dagster import DynamicPartitionsDefinition

batches = DynamicPartitionsDefinition(name="batches")
