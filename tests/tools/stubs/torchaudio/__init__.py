"""Stands in for torchaudio in the LLaMA-Factory venv (see tests/tools/__init__.py).

The torchaudio wheel is linked against CUDA torch and cannot load next to the CPU torch;
``llamafactory/data/mm_plugin.py`` imports it at module level but uses it for audio only, which
no dataset of this project holds. Any real use fails loudly.
"""

__version__ = "0.0-stub"


def __getattr__(name: str):
    raise ImportError(f"torchaudio stub: {name!r} is unavailable (audio is never loaded by these tests)")
