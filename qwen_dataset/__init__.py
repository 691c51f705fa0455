"""qwen-dataset: the domain library behind the Dagster code location.

Nothing in this package imports dagster except :mod:`qwen_dataset.definitions`, the code
location's entry point.
"""

__version__ = "0.1.0"
