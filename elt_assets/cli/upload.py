"""`elt upload-server`: producers without bucket or disk access PUT their files here.

    PUT|POST /v1/datasets/{dataset}/files/{name}   the file as the body (streamed)
    GET      /v1/datasets/{dataset}/files/{name}   its status: manifest row, open quarantine

A file is streamed into the landing zone under a hidden name (a directory) or as a multipart
upload (a bucket), hashed on the way, and appears under its own name only once it is complete
and its SHA-256 matches the one the client sent (header X-Content-SHA256, optional): the sensor
never sees half a file. It lands in the dataset's folder, the fixed part of its contract's glob,
and must match that glob.

Access: `Authorization: Bearer TOKEN`, checked against the hashes in ELT_UPLOAD_TOKENS, each
scoped to datasets. Refused with 4xx and nothing written: no or unknown token (401), a dataset
the token may not write (403), an unknown dataset (404), a body over ELT_UPLOAD_MAX_BYTES (413),
a format that is not CSV, CSV.gz or Parquet (415), a name that is not one plain file name (400),
a SHA-256 that does not match (422). TLS is the reverse proxy's job: serve this behind one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import signal
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from elt_assets.contracts.loader import load_contracts
from elt_assets.contracts.model import Contract
from elt_assets.errors import TerminalError
from elt_assets.landing.files import glob_matches, is_in_progress
from elt_assets.landing.zone import Landing
from elt_assets.log import get_logger
from elt_assets.postgres.alerts import newest_file_facts
from elt_assets.postgres.connection import connect
from elt_assets.postgres.inspect import open_quarantine_rows
from elt_assets.postgres.landing_state import loaded_content
from elt_assets.settings import Settings, UploadToken, upload_settings, upload_tokens

log = get_logger(__name__)
FORMATS = (".csv", ".csv.gz", ".parquet")
MAX_NAME = 200
UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")
WILDCARDS = re.compile(r"[*?\[{]")


class Refused(TerminalError):
    """A request refused with an HTTP status and a message that says what to do (the
    producer's to fix: sending it again unchanged gets the same answer)."""

    def __init__(self, status: int, message: str, **headers: str):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def make_token() -> str:
    """A new random token (256 bits)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def folder_of(contract: Contract) -> str:
    """The fixed folder of a dataset's glob, where its uploads land ("" at the root)."""
    parts = contract.source.glob.split("/")[:-1]
    fixed = []
    for part in parts:
        if WILDCARDS.search(part):
            break
        fixed.append(part)
    return "/".join(fixed)


def check_name(name: str) -> None:
    if not name or len(name) > MAX_NAME or UNSAFE.search(name) or name in {".", ".."}:
        raise Refused(
            400,
            f"the file name must be one plain name of 1-{MAX_NAME} characters, without "
            'slashes, control characters or any of : * ? " < > |',
        )
    if is_in_progress(name):
        raise Refused(
            400, "the file name must not start with . or ~ nor end like a file in progress (.tmp)"
        )
    if not name.lower().endswith(FORMATS):
        raise Refused(415, "upload CSV (.csv), gzipped CSV (.csv.gz) or Parquet (.parquet) files")


@dataclass(frozen=True)
class UploadService:
    """What the endpoint serves: the datasets, the landing zone, the warehouse, the tokens."""

    contracts: dict[str, Contract]
    landing: Landing
    database_url: str
    tokens: list[UploadToken]
    max_bytes: int

    def authorize(self, request: Request, dataset: str) -> UploadToken:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Refused(401, "send Authorization: Bearer TOKEN", **{"WWW-Authenticate": "Bearer"})
        digest = token_hash(token.strip())
        found = None
        for known in self.tokens:  # compare with every one, in constant time each
            if hmac.compare_digest(known.sha256, digest):
                found = known
        if found is None:
            raise Refused(401, "unknown token", **{"WWW-Authenticate": "Bearer"})
        if dataset not in self.contracts:
            raise Refused(404, f"no dataset named {dataset!r}")
        if not found.allows(dataset):
            raise Refused(403, f"token {found.name!r} may not write dataset {dataset!r}")
        return found

    def file_of(self, dataset: str, name: str) -> str:
        check_name(name)
        contract = self.contracts[dataset]
        folder = folder_of(contract)
        file = f"{folder}/{name}" if folder else name
        if not glob_matches(contract.source.glob, file):
            raise Refused(
                422, f"{file} does not match dataset {dataset}'s glob {contract.source.glob}"
            )
        return file

    async def put(self, request: Request) -> JSONResponse:
        dataset, name = request.path_params["dataset"], request.path_params["name"]
        producer = self.authorize(request, dataset)
        file = self.file_of(dataset, name)
        expected = request.headers.get("x-content-sha256", "").strip().lower() or None
        if expected is not None and not re.fullmatch(r"[0-9a-f]{64}", expected):
            raise Refused(400, "X-Content-SHA256 must be 64 hexadecimal digits")
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            raise Refused(
                413, f"the file is larger than {self.max_bytes} bytes (ELT_UPLOAD_MAX_BYTES)"
            )
        sha256, size = await self._receive(request, file, expected)
        with connect(self.database_url, setting="ELT_DATABASE_URL") as connection:
            known = loaded_content(connection, dataset, [sha256])
        log.info("upload: %s put %s (%d bytes, sha256 %s)", producer.name, file, size, sha256)
        return JSONResponse(
            {
                "dataset": dataset,
                "file": file,
                "sha256": sha256,
                "size_bytes": size,
                "duplicate": sha256 in known,
                "loaded_as": known.get(sha256),
                "status_url": str(request.url),
            },
            status_code=201,
        )

    async def _receive(self, request: Request, file: str, expected: str | None) -> tuple[str, int]:
        receiver = await run_in_threadpool(self.landing.receive, file)
        digest, size = hashlib.sha256(), 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > self.max_bytes:
                    raise Refused(
                        413,
                        f"the file is larger than {self.max_bytes} bytes (ELT_UPLOAD_MAX_BYTES)",
                    )
                digest.update(chunk)
                await run_in_threadpool(receiver.write, chunk)
            if size == 0:
                raise Refused(400, "the body is empty: send the file's bytes")
            if expected is not None and digest.hexdigest() != expected:
                raise Refused(
                    422,
                    f"the body's SHA-256 is {digest.hexdigest()}, not {expected}: send it again",
                )
            await run_in_threadpool(receiver.commit)
        except BaseException:
            await run_in_threadpool(receiver.abort)
            raise
        return digest.hexdigest(), size

    async def status(self, request: Request) -> JSONResponse:
        dataset, name = request.path_params["dataset"], request.path_params["name"]
        self.authorize(request, dataset)
        file = self.file_of(dataset, name)
        with connect(self.database_url, setting="ELT_DATABASE_URL") as connection:
            facts = newest_file_facts(connection, dataset, [file])
            quarantined = open_quarantine_rows(connection, dataset, file) if facts else 0
        landed = await run_in_threadpool(self.landing.stat, file)
        if not facts and landed is None:
            raise Refused(404, f"{file} is neither in the landing zone nor in the manifest")
        body: dict[str, Any] = {"dataset": dataset, "file": file, "in_landing_zone": bool(landed)}
        if facts:
            row = facts[0]
            body.update(
                status=row.status,
                sha256=row.sha256,
                error=row.error,
                counts=row.counts(),
                open_quarantine_rows=quarantined,
            )
        else:
            body.update(status="waiting")  # landed; the sensor has not taken it yet
        return JSONResponse(body)


def _refusal(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, Refused)
    return JSONResponse({"error": error.message}, status_code=error.status, headers=error.headers)


def upload_app(service: UploadService) -> Starlette:
    path = "/v1/datasets/{dataset}/files/{name}"

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def elsewhere(request: Request) -> JSONResponse:
        return JSONResponse(
            {"error": f"no such endpoint: use {path} (a file name has no slashes)"},
            status_code=404,
        )

    return Starlette(
        routes=[
            Route(path, service.put, methods=["PUT", "POST"]),
            Route(path, service.status, methods=["GET"]),
            Route("/healthz", health, methods=["GET"]),
            Route("/{rest:path}", elsewhere, methods=["GET", "PUT", "POST"]),
        ],
        exception_handlers={Refused: _refusal},
    )


def upload_service(settings: Settings, database_url: str) -> UploadService:
    from elt_assets.orchestration.resources import landing_resource

    settings.require_landing()
    contract_set = load_contracts(settings.require_contracts_dir())
    _, max_bytes = upload_settings()
    zone = landing_resource(settings).zone()
    zone.check()
    return UploadService(
        contracts={c.name: c for c in contract_set.contracts},
        landing=zone,
        database_url=database_url,
        tokens=upload_tokens(),
        max_bytes=max_bytes,
    )


def run_upload_server(service: UploadService, host: str, port: int) -> int:
    """Serve until SIGTERM or Ctrl-C; exit 0."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(upload_app(service), host=host, port=port, log_level="warning")
    )

    def stop(signum: int, frame: object) -> None:
        server.should_exit = True

    for signum in (signal.SIGTERM, signal.SIGINT):  # also when started with them ignored
        signal.signal(signum, stop)
    log.info("upload endpoint on http://%s:%d/v1/datasets/{dataset}/files/{name}", host, port)
    server.run()
    return 0


def serve_in_background(service: UploadService, host: str, port: int) -> tuple[Any, Any]:
    """The endpoint in a thread of this process (`elt dev`): its server (set `should_exit` to
    stop it) and the thread. Raises OSError at once when the port is not free."""
    import socket
    import threading

    import uvicorn

    listening = socket.create_server((host, port))  # bound here, so a taken port fails now
    server = uvicorn.Server(
        uvicorn.Config(upload_app(service), log_level="warning", lifespan="off")
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listening]}, name="elt-uploads", daemon=True
    )
    thread.start()
    return server, thread
