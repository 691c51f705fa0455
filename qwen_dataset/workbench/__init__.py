"""The review workbench: a FastAPI web app on the annotation database (see docs/workbench.md)."""

from qwen_dataset.workbench.app import create_app
from qwen_dataset.workbench.config import WorkbenchSettings

__all__ = ["WorkbenchSettings", "create_app"]
