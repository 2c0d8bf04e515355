"""Run a command as a user runs it and report its wall time and peak memory.

    python -m benchmarks.peak -- COMMAND [ARG...]

Prints one JSON line: {"seconds": wall time from start to exit, "peak_rss_mb": the command's
own peak resident memory, "exit": its exit status}. The command runs in a process forked from
this small one: Linux carries a process's high-water mark through exec and through the vfork
that subprocess uses, so a command started directly by a big benchmark process would report the
benchmark's memory as its own.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(argv: list[str]) -> int:
    command = argv[argv.index("--") + 1 :] if "--" in argv else argv
    started = time.perf_counter()
    child = os.fork()
    if child == 0:
        try:
            os.execvp(command[0], command)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(child, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak, "exit": code}), flush=True)
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
