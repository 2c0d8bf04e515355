"""How a failing file is reported: in the manifest, in the Dagster UI, and to the retry policy.

Every step that touches a file runs inside `file_failures`. A transient database problem is
re-raised for the assets' RetryPolicy (exponential backoff with jitter). Anything else (a malformed
file, a contract the data breaks, a missing privilege, and any error of no known kind) becomes a
Dagster `Failure` with `allow_retries=False` and a message that names the file and says what to
do; the manifest row of the file records it as `failed` with the same message. A transient problem
leaves the row `running` (its error notes the problem): the attempt goes on with the retry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dagster as dg

from elt_assets.errors import EltError
from elt_assets.log import get_logger, mask_secrets
from elt_assets.postgres.errors import (
    TransientDatabaseError,
    describe,
    is_database_error,
    is_transient,
)
from elt_assets.postgres.load import ManifestKey, fail_file
from elt_assets.postgres.recovery import note_retry
from elt_assets.postgres.resource import PostgresResource

log = get_logger(__name__)


def _record(
    warehouse: PostgresResource,
    key: ManifestKey | None,
    message: str,
    run_id: str,
    *,
    transient: bool = False,
) -> None:
    """Best effort: when the database itself is the problem, the log still has the message.

    A transient error is retried by the step's RetryPolicy: the file stays `running` (with the
    message as a note) instead of `failed`, which would stop the target after a good retry.
    """
    if key is None:
        return
    try:
        with warehouse.connection() as connection:
            if transient:
                note_retry(connection, key.dataset, key.file, key.sha256, message)
            else:
                fail_file(connection, key, message, run_id)
    except Exception as error:
        log.warning("could not record the failure of %s in the manifest: %s", key.file, error)


@contextlib.contextmanager
def file_failures(
    warehouse: PostgresResource, key: ManifestKey | None, run_id: str
) -> Iterator[None]:
    """Turn what goes wrong with a file into a retry (transient) or one failure (all else).

    An error of no known kind is a defect somewhere: retrying it could only repeat it, or worse,
    let a retry succeed after the manifest recorded `failed`. It fails the file at once, like
    every terminal error, with its traceback in the log.
    """
    try:
        yield
    except dg.Failure:
        raise
    except Exception as error:
        transient = is_transient(error)
        if is_database_error(error):
            message = describe(error)
        elif isinstance(error, EltError):  # its message already says what to do
            message = mask_secrets(str(error))
        else:
            message = mask_secrets(f"unexpected {type(error).__name__}: {error}")
            log.error("%s", message, exc_info=error)
        _record(warehouse, key, message, run_id, transient=transient)
        if transient:
            log.warning("transient problem, the step will be retried: %s", message)
            raise TransientDatabaseError(message) from None
        metadata = {"file": key.file, "dataset": key.dataset} if key else {}
        if key is not None:  # the file is finished (failed): another run may take it
            warehouse.leases().release(key.dataset, [key.file])
        raise dg.Failure(description=message, metadata=metadata, allow_retries=False) from None
