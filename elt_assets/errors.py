"""The platform's errors: one root, two branches, and nothing else.

Every error the platform raises on purpose is an `EltError` whose message names what went wrong
(the file, the line, the column, the setting) and what to do. It is either

- `TransientError`: worth retrying (a lost connection, a server restarting, a deadlock); the
  steps' RetryPolicy retries it and the file stays `running`; or
- `TerminalError`: retrying cannot help (a malformed file, a broken contract, a missing setting
  or privilege); the file fails at once, is recorded `failed`, and is not retried.

An exception of no known kind is a defect and is treated as terminal (failures.py). This module
imports nothing, so every layer may use it.
"""


class EltError(Exception):
    """An error the platform raises on purpose; the message says what to do."""


class TransientError(EltError):
    """Worth retrying: the same work may succeed in a moment."""


class TerminalError(EltError):
    """Retrying cannot help: fail now, with the message."""
