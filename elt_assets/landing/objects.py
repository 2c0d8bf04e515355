"""Files landing in object storage: an S3-compatible bucket, `s3://BUCKET/PREFIX`.

The objects under the prefix are the zone's files, named by their key relative to the prefix
(byte for byte: the partition key rules of landing/keys.py apply as for local paths). Contract
globs match those names as they match local paths. Endpoint and credentials come from the
standard AWS variables and chain, as boto3 reads them (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY` or `AWS_SECRET_ACCESS_KEY_FILE`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
profiles, instance and web-identity roles); the secret is registered for masking, never shown.

Reading streams: the readers get the object's bytes over HTTP (CSV from the first byte, Parquet by
ranges), never a local copy and never the whole object in memory. Every request is conditional on
the ETag the step saw first, so an object replaced meanwhile is refused (ObjectChanged), never
half old and half new; the reader also checks the content against the sha256 the raw step
recorded.
Archiving (ELT_ARCHIVE_DIR=s3://BUCKET/PREFIX) copies a loaded object under the archive prefix,
only if it still holds the loaded content, then deletes it from the landing prefix; without it,
landing objects are never modified or deleted.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from typing import Any
from urllib.parse import urlsplit

from elt_assets.errors import TransientError
from elt_assets.landing.archive import SUFFIX_DIGITS, NotArchived, split_extension
from elt_assets.landing.files import (
    HASH_CHUNK_BYTES,
    LandedFile,
    LandingPathError,
    glob_matches,
    in_hidden_folder,
    is_in_progress,
)
from elt_assets.landing.source import Source
from elt_assets.landing.zone import Landing, LandingUnreachable, Receiver
from elt_assets.log import get_logger, register_secret
from elt_assets.settings import secret_from_file

log = get_logger(__name__)

# Codes S3 answers when the configuration, not the moment, is wrong.
_CONFIGURATION_CODES = {
    "NoSuchBucket": "the bucket does not exist at this endpoint",
    "InvalidAccessKeyId": "the access key is not known to this endpoint",
    "SignatureDoesNotMatch": "the secret key does not match the access key",
    "AccessDenied": "these credentials may not list or read the prefix",
    "InvalidBucketName": "this is not a valid bucket name",
    "PermanentRedirect": "the bucket lives in another region: set AWS_REGION",
    "AuthorizationHeaderMalformed": "the region is wrong: set AWS_REGION",
}


class ObjectReadFailed(TransientError):
    """Reading an object failed midway (a dropped or throttled connection): worth retrying."""


class ObjectChanged(TransientError):
    """The object was replaced between looking at it and reading it; the next tick takes it."""


def s3_client() -> Any:
    """An S3 client as the AWS variables and chain configure it."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise LandingUnreachable(
            "an s3:// landing zone needs boto3: pip install 'elt-assets[s3]'"
        ) from None
    credentials: dict[str, str] = {}
    secret_file = os.environ.get("AWS_SECRET_ACCESS_KEY_FILE")
    if secret_file:
        credentials["aws_access_key_id"] = os.environ.get("AWS_ACCESS_KEY_ID", "")
        credentials["aws_secret_access_key"] = secret_from_file(
            "AWS_SECRET_ACCESS_KEY", secret_file
        )
        if os.environ.get("AWS_SESSION_TOKEN"):
            credentials["aws_session_token"] = os.environ["AWS_SESSION_TOKEN"]
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        if os.environ.get(name):
            register_secret(os.environ[name])
    # Throttling and dropped connections are retried by botocore with backoff; a wrong
    # endpoint fails within seconds instead of hanging.
    config = Config(
        retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=60
    )
    return boto3.session.Session().client("s3", config=config, **credentials)


class ObjectStore(Landing):
    """The objects under `s3://bucket/prefix`, read-only."""

    # An object is listed only once its upload completed: no stable-file wait.
    complete_when_listed = True

    def __init__(self, url: str, archive_url: str | None = None, client: Any = None):
        self.url, self.bucket, self.prefix = url, *_bucket_and_prefix(url)
        self.archive_url = archive_url
        self.client = client if client is not None else s3_client()

    def describe(self) -> str:
        return self.url

    def receive(self, file: str) -> Receiver:
        return _ObjectReceiver(self, self._key(file))

    def relative(self, given: str) -> str:
        root = f"s3://{self.bucket}/{self.prefix}"
        return given.removeprefix(root) if given.startswith(root) else super().relative(given)

    def location(self, file: str) -> str:
        return f"s3://{self.bucket}/{self._key(file)}"

    def _key(self, file: str) -> str:
        parts = file.split("/")
        if not file or any(p in ("", ".", "..") for p in parts):
            raise LandingPathError(f"{file!r} is not a plain name inside {self.url}")
        return self.prefix + file

    def problem(self, error: Exception, doing: str) -> Exception:
        """The error to raise for a failed call: configuration (terminal) or a moment's trouble."""
        from botocore.exceptions import ClientError, EndpointConnectionError

        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in _CONFIGURATION_CODES:
                return LandingUnreachable(
                    f"{self.url}: cannot {doing}: {_CONFIGURATION_CODES[code]} ({code}); check "
                    "the URL, AWS_ENDPOINT_URL, AWS_REGION and the credentials"
                )
        if isinstance(error, EndpointConnectionError):
            endpoint = self.client.meta.endpoint_url  # not the request's URL and query
            return LandingUnreachable(
                f"{self.url}: cannot {doing}: cannot reach an S3 endpoint at {endpoint}; check "
                "AWS_ENDPOINT_URL and the network"
            )
        return ObjectReadFailed(f"{self.url}: cannot {doing} right now ({error}); will retry")

    def check(self) -> None:
        try:  # one key is enough to know the bucket, the endpoint and the credentials work
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
        except Exception as error:
            raise self.problem(error, "list the prefix") from None

    def scan(self, pattern: str) -> list[LandedFile]:
        return self.scan_from(pattern, None, 0)[0]

    def scan_from(
        self, pattern: str, start_after: str | None, limit: int
    ) -> tuple[list[LandedFile], str | None]:
        """The objects after `start_after`, page by page (at most 1,000 keys each) until `limit`
        keys were listed (0: all); and the last key listed when more remain."""
        found, listed, last = [], 0, None
        options: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix}
        if start_after:
            options["StartAfter"] = self.prefix + start_after
        if limit:
            options["PaginationConfig"] = {"PageSize": min(1000, limit)}
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(**options):
                for item in page.get("Contents", []):
                    relative = last = item["Key"][len(self.prefix) :]
                    listed += 1
                    if self._is_file(relative) and glob_matches(pattern, relative):
                        found.append(_landed(relative, item))
                if limit and listed >= limit and page.get("IsTruncated"):
                    break
            else:
                last = None  # the end of the prefix: the next share starts at the top
        except Exception as error:
            raise self.problem(error, "list the prefix") from None
        found.sort(key=lambda f: f.relative_path)
        return found, last

    @staticmethod
    def _is_file(relative: str) -> bool:
        """A complete data file: not a folder marker, not in progress, not in a writer's own
        folder (files.py `in_hidden_folder`)."""
        parts = relative.split("/")
        if not relative or relative.endswith("/") or is_in_progress(parts[-1]):
            return False
        return not in_hidden_folder(parts[:-1])

    def stat(self, file: str) -> LandedFile | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(file))
        except ClientError as error:
            if str(error.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey"):
                return None
            raise self.problem(error, f"look at {file}") from None
        except Exception as error:
            raise self.problem(error, f"look at {file}") from None
        return _landed(file, {"Size": head["ContentLength"], **head})

    def get_object(self, file: str, etag: str | None = None, byte_range: str | None = None) -> Any:
        from botocore.exceptions import ClientError

        options = {"IfMatch": etag} if etag else {}
        if byte_range:
            options["Range"] = byte_range
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(file), **options)[
                "Body"
            ]
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code"))
            if code in ("404", "NoSuchKey"):
                raise FileNotFoundError(f"{self.location(file)} is gone") from None
            if code in ("412", "PreconditionFailed"):
                raise ObjectChanged(
                    f"{self.location(file)} was replaced while it was being read; its new "
                    "content is taken on the next tick"
                ) from None
            raise self.problem(error, f"read {file}") from None
        except Exception as error:
            raise self.problem(error, f"read {file}") from None

    def sha256(self, file: str) -> str:
        """The content's sha256: the object's own SHA256 checksum when it was uploaded with one
        (S3 verified it then; nothing is read), else hashed while the object streams. The
        reader checks the content against it in any case."""
        checksum = self._checksum(file)
        if checksum is not None:
            return checksum
        return ObjectSource(self, file, None, 0).sha256()

    def _checksum(self, file: str) -> str | None:
        try:
            head = self.client.head_object(
                Bucket=self.bucket, Key=self._key(file), ChecksumMode="ENABLED"
            )
        except Exception:
            return None  # the read below says what is wrong
        value = head.get("ChecksumSHA256")
        # A multipart upload's checksum is of its parts' checksums, not of the content; its ETag
        # ("...-N") says it was uploaded in parts even where the checksum does not.
        multipart = "-" in str(head.get("ETag", "")) or "-" in str(value)
        if not value or multipart or head.get("ChecksumType") not in (None, "FULL_OBJECT"):
            return None
        try:
            return base64.b64decode(value, validate=True).hex()
        except ValueError:
            return None

    def source(self, file: str) -> Source:
        """The object as it is now (its ETag): every read asks for exactly that version."""
        now = self.stat(file)
        if now is None:
            raise FileNotFoundError(f"{self.location(file)} is gone")
        return ObjectSource(self, file, now.etag, now.size_bytes)

    @property
    def archives(self) -> bool:
        return self.archive_url is not None

    def archive(self, file: str, sha256: str) -> str:
        """Copy the loaded object (still holding `sha256`) under the archive prefix, then delete
        it from the landing prefix. Raises NotArchived, with the reason, when it stays."""
        assert self.archive_url is not None, "archive() needs ELT_ARCHIVE_DIR"
        try:
            return self._archive(file, sha256)
        except NotArchived:
            raise
        except Exception as error:
            raise NotArchived(
                f"could not archive {self.location(file)} into {self.archive_url} ({error}); it "
                "stays in the landing zone"
            ) from None

    def _archive(self, file: str, sha256: str) -> str:
        landed = self.stat(file)
        if landed is None:
            raise NotArchived(f"{self.location(file)} is gone; nothing to archive")
        if ObjectSource(self, file, landed.etag, landed.size_bytes).sha256() != sha256:
            raise NotArchived(
                f"{file} changed after it was loaded (its new content is loaded by the next "
                "sensor tick); left in place"
            )
        bucket, key = self._archive_key(file, sha256)
        self.client.copy(
            {"Bucket": self.bucket, "Key": self._key(file)},
            bucket,
            key,
            ExtraArgs={"CopySourceIfMatch": landed.etag} if landed.etag else None,
        )
        now = self.stat(file)
        if now is None or now.etag != landed.etag:
            raise NotArchived(
                f"{file} was replaced while it was being archived: s3://{bucket}/{key} holds the "
                "loaded content, the new object stays and is loaded by the next tick"
            )
        self.client.delete_object(Bucket=self.bucket, Key=self._key(file))
        return f"s3://{bucket}/{key}"

    def _archive_key(self, file: str, sha256: str) -> tuple[str, str]:
        """The archive's key for `file`: the same relative key, or with the sha256 prefix (then
        a counter) when that key is taken."""
        assert self.archive_url is not None
        bucket, prefix = _bucket_and_prefix(self.archive_url)
        folder, _, name = file.rpartition("/")
        stem, extension = split_extension(name)
        stem = f"{folder}/{stem}" if folder else stem
        candidates = [file, f"{stem}.{sha256[:SUFFIX_DIGITS]}{extension}"]
        candidates += (f"{stem}.{sha256[:SUFFIX_DIGITS]}-{n}{extension}" for n in range(2, 100))
        for candidate in candidates:
            if not self._exists(bucket, prefix + candidate):
                return bucket, prefix + candidate
        raise NotArchived(f"{file}: a hundred archived copies already; left in place")

    def _exists(self, bucket: str, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if str(error.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey"):
                return False
            raise
        return True

    def archived_copy(self, file: str) -> str | None:
        if self.archive_url is None:
            return None
        bucket, prefix = _bucket_and_prefix(self.archive_url)
        try:
            found = self._exists(bucket, prefix + file)
        except Exception:
            return None
        return f"s3://{bucket}/{prefix}{file}" if found else None


def _bucket_and_prefix(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


def _landed(relative: str, item: dict[str, Any]) -> LandedFile:
    modified = item.get("LastModified")
    mtime_ns = int(modified.timestamp() * 1_000_000_000) if modified is not None else 0
    return LandedFile(relative, int(item["Size"]), mtime_ns, item.get("ETag"))


# S3 takes parts of at least 5 MiB (but the last); 8 MiB parts keep an upload's memory small.
PART_BYTES = 8 << 20


class _ObjectReceiver(Receiver):
    """A multipart upload to the object's own key: S3 shows the object only once the upload is
    completed (commit), and an aborted upload leaves nothing."""

    def __init__(self, store: ObjectStore, key: str):
        self.store, self.key = store, key
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        try:
            started = store.client.create_multipart_upload(Bucket=store.bucket, Key=key)
        except Exception as error:
            raise store.problem(error, f"start an upload of {key}") from None
        self._id = started["UploadId"]

    def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        if len(self._buffer) >= PART_BYTES:
            self._send()

    def _send(self) -> None:
        number = len(self._parts) + 1
        try:
            sent = self.store.client.upload_part(
                Bucket=self.store.bucket,
                Key=self.key,
                UploadId=self._id,
                PartNumber=number,
                Body=bytes(self._buffer),
            )
        except Exception as error:
            raise self.store.problem(error, f"upload part {number} of {self.key}") from None
        self._parts.append({"PartNumber": number, "ETag": sent["ETag"]})
        self._buffer.clear()

    def commit(self) -> None:
        if self._buffer or not self._parts:
            self._send()
        try:
            self.store.client.complete_multipart_upload(
                Bucket=self.store.bucket,
                Key=self.key,
                UploadId=self._id,
                MultipartUpload={"Parts": self._parts},
            )
        except Exception as error:
            raise self.store.problem(error, f"complete the upload of {self.key}") from None

    def abort(self) -> None:
        self._buffer.clear()
        try:
            self.store.client.abort_multipart_upload(
                Bucket=self.store.bucket, Key=self.key, UploadId=self._id
            )
        except Exception as error:  # a bucket lifecycle rule removes what is left
            log.warning("could not abort the upload of %s: %s", self.key, error)


class ObjectSource(Source):
    """One version of an object (its ETag), streamed or read by ranges."""

    RANGE_BYTES = 8 << 20  # one ranged GET reads at least this much (Parquet's small reads)

    def __init__(self, store: ObjectStore, file: str, etag: str | None, size: int):
        self.store, self.file, self.etag, self._size = store, file, etag, size

    @property
    def size(self) -> int:
        return self._size

    def open(self) -> io.BufferedIOBase:
        return io.BufferedReader(_Body(self), HASH_CHUNK_BYTES)

    def open_seekable(self) -> io.BufferedIOBase:
        return io.BufferedReader(_Ranges(self), self.RANGE_BYTES)

    def first_bytes(self, count: int) -> bytes:
        """One ranged GET: a peek does not start the whole object's download."""
        if self._size == 0 or count <= 0:
            return b""
        body = self.get(f"bytes=0-{min(count, self._size) - 1}")
        try:
            return bytes(body.read())
        except Exception as error:
            raise self.failed(error) from None
        finally:
            body.close()

    def sha256(self) -> str:
        digest = hashlib.sha256()
        with self.open() as stream:
            while chunk := stream.read(HASH_CHUNK_BYTES):
                digest.update(chunk)
        return digest.hexdigest()

    def get(self, byte_range: str | None = None) -> Any:
        """The object's body (a byte range of it), for exactly this version."""
        return self.store.get_object(self.file, self.etag, byte_range)

    def failed(self, error: Exception) -> Exception:
        return self.store.problem(error, f"read {self.file}")


class _Body(io.RawIOBase):
    """The object from its first byte, one GET, read as it arrives."""

    def __init__(self, source: ObjectSource):
        self._source = source
        self._body: Any = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._body is None:
            self._body = self._source.get()
        try:
            data = self._body.read(len(buffer))
        except Exception as error:
            raise self._source.failed(error) from None
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None
        super().close()


class _Ranges(io.RawIOBase):
    """Random access to the object by ranged GETs (Parquet reads its footer, then columns)."""

    def __init__(self, source: ObjectSource):
        self._source = source
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._source.size}
        self._position = max(0, base[whence] + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        size = self._source.size
        if self._position >= size or not len(buffer):
            return 0
        last = min(size, self._position + len(buffer)) - 1
        body = self._source.get(f"bytes={self._position}-{last}")
        try:
            data = body.read()
        except Exception as error:
            raise self._source.failed(error) from None
        finally:
            body.close()
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)
