"""Where the measured commands run from: a user's install, not our development environment.

`scripts/bootstrap.py bench` builds it under .elt/bench/venv from uv.lock (the package with its
`platform` extra and the `bench` group: dlt and ADBC; no test or lint tools) and names its
interpreter in ELT_BENCH_PYTHON. What a development environment adds can cost a command time a
user would not pay: pandera imports hypothesis, when installed, at a process's first validation
(0.1 s). Without ELT_BENCH_PYTHON the commands run from this interpreter's environment.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

USER_PYTHON = Path(os.environ.get("ELT_BENCH_PYTHON") or sys.executable)
USER_BIN = USER_PYTHON.parent
