"""An S3 bucket for the benchmark: moto's server on loopback (the tests' S3 API), in this process.

moto keeps objects in memory and answers from Python, so it is slower than S3 or MinIO: what a
bucket run costs beyond a local one here is an upper bound of what the landing's reading costs.
Big files are uploaded through the S3 API (multipart, as a producer would); the tick scenario's
100,000 small objects are put straight into moto's store (a setup step, not measured), because
100,000 PUTs through its HTTP server take minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUCKET = "elt-bench"


@dataclass
class BenchBucket:
    endpoint: str
    server: Any
    prefix: str = "landing"

    @property
    def url(self) -> str:
        return f"s3://{BUCKET}/{self.prefix}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "bench-access-key",
            "AWS_SECRET_ACCESS_KEY": "bench-secret-key",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self) -> Any:
        import boto3

        env = self.env
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_REGION"],
        )

    def upload(self, path: Path, relative: str) -> None:
        """Upload a file under the prefix through the S3 API (multipart above 8 MiB)."""
        self.client().upload_file(str(path), BUCKET, f"{self.prefix}/{relative}")

    def put_directly(self, objects: dict[str, bytes]) -> None:
        """Setup only: objects into moto's store without HTTP (its default account)."""
        from moto.s3.models import s3_backends

        store = s3_backends["123456789012"]["global"]
        for relative, body in objects.items():
            store.put_object(BUCKET, f"{self.prefix}/{relative}", body)

    def list_seconds(self, relative_prefix: str, keys: int) -> float:
        """How long listing `keys` keys takes through the S3 API alone (moto's share of a tick)."""
        import time

        started = time.perf_counter()
        paginator = self.client().get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=BUCKET,
            Prefix=f"{self.prefix}/{relative_prefix}",
            PaginationConfig={"PageSize": 1000, "MaxItems": keys},
        )
        for _ in pages:
            pass
        return time.perf_counter() - started

    def stop(self) -> None:
        self.server.stop()


def start_bucket() -> BenchBucket:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # not a line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    bucket = BenchBucket(f"http://{host}:{port}", server)
    bucket.client().create_bucket(Bucket=BUCKET)
    return bucket
