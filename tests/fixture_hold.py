"""The fixture backend's hold protocol (see :class:`tests.fixtures_code_location.ScriptedBackend`).

Its own module so that the fixture code location, which every run worker of the operations tests
and of ``benchmarks/bench_dagster_overhead.py`` imports, does not load :mod:`tests.ops_helpers`
(httpx, pandas, PyYAML: about half a second) just for two file names.
"""

HOLD_FILE = "hold"  # while <hold dir>/hold exists, the backend waits after the first frame
HELD_MARKER = "annotating.json"  # written when it starts waiting: its pid and the frame it holds at
