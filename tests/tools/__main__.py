"""``python -m tests.tools [NAME ...]``: build the tool venvs (all by default) and say how long each took.

For Label Studio it also migrates the template data folder the server tests start from.
"""

import sys
import time

from tests.tools import TOOLS, ensure, install_seconds
from tests.tools.label_studio import template_dir

for name in sys.argv[1:] or list(TOOLS):
    began = time.monotonic()
    ensure(name)
    if name == "label-studio":
        template_dir()
    print(f"{name}: ready in {time.monotonic() - began:.1f} s (built in {install_seconds(name)} s)", flush=True)
