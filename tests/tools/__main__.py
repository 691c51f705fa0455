"""``python -m tests.tools [NAME ...]``: build the tool venvs (all by default) and say how long each took."""

import sys
import time

from tests.tools import TOOLS, ensure, install_seconds

for name in sys.argv[1:] or list(TOOLS):
    began = time.monotonic()
    ensure(name)
    print(f"{name}: ready in {time.monotonic() - began:.1f} s (built in {install_seconds(name)} s)", flush=True)
