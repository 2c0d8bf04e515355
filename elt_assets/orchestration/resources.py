"""Resources the assets and sensors share: the landing zone and the warehouse.

Configuration enters here, once: `build_resources` turns the settings (environment variables,
read when Dagster loads the code) into resource fields, and `elt ingest` builds the same
resources from its flags. Steps and sensors read their configuration from the resources they
are given, never from the environment. Secrets stay out of the UI: a URL is passed as a
`dg.EnvVar`, which Dagster shows by name and resolves when a run or tick starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from elt_assets.landing.objects import ObjectStore
from elt_assets.landing.zone import Landing, LocalDirectory
from elt_assets.orchestration.instance import keep_storage_connections
from elt_assets.orchestration.names import DEFAULT_NAMING, Naming
from elt_assets.postgres.io_manager import StagingIOManager
from elt_assets.postgres.resource import PostgresResource
from elt_assets.settings import (
    SETTINGS,
    Settings,
    check_archive_dir,
    check_archive_url,
    existing_directory,
)


class LandingResource(dg.ConfigurableResource):
    """The landing zone files are read from (one implementation per kind of zone)."""

    batch_rows: int = Field(
        default=int(SETTINGS["ELT_BATCH_ROWS"][0]),
        description="Rows per streamed batch while reading a file (ELT_BATCH_ROWS).",
    )

    max_record_bytes: int = Field(
        default=int(SETTINGS["ELT_MAX_RECORD_BYTES"][0]),
        description="The longest CSV record a file may hold (ELT_MAX_RECORD_BYTES).",
    )

    def zone(self) -> Landing:
        raise NotImplementedError

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Every step of the platform's runs reads the landing zone, so this is the first code of
        # ours a run process executes: its events from here on share one storage connection.
        if context.run is not None and context.instance is not None:
            keep_storage_connections(context.instance)


class LocalLanding(LandingResource):
    """A directory on the machine that runs the steps (ELT_LANDING_DIR). Files are read, never
    changed or deleted, except that with `archive_dir` (ELT_ARCHIVE_DIR) a loaded file is moved
    there (landing/archive.py)."""

    root: str | None = Field(default=None, description="The landing directory (ELT_LANDING_DIR).")
    root_source: str = Field(
        default="ELT_LANDING_DIR", description="Where `root` came from, for messages."
    )
    archive_dir: str | None = Field(
        default=None, description="Where loaded files move to (ELT_ARCHIVE_DIR); unset: nowhere."
    )

    _zone: LocalDirectory | None = PrivateAttr(default=None)

    def zone(self) -> Landing:
        """The directory, checked on first use (with the archive against it)."""
        if self._zone is None:
            root = existing_directory(
                Path(self.root) if self.root else None, self.root_source, "landing"
            )
            archive = Path(self.archive_dir) if self.archive_dir else None
            if archive is not None:
                check_archive_dir(root, archive)
            self._zone = LocalDirectory(root, archive)
        return self._zone


class ObjectLanding(LandingResource):
    """Objects under an S3-compatible URL, s3://BUCKET/PREFIX (ELT_LANDING_DIR); endpoint and
    credentials from the AWS_* variables. Read-only."""

    url: str = Field(description="s3://BUCKET/PREFIX (ELT_LANDING_DIR).")
    archive_url: str | None = Field(
        default=None,
        description="s3://BUCKET/PREFIX loaded objects move to (ELT_ARCHIVE_DIR); unset: none.",
    )

    _zone: ObjectStore | None = PrivateAttr(default=None)

    def zone(self) -> Landing:
        if self._zone is None:
            if self.archive_url is not None:
                check_archive_url(self.url, self.archive_url)
            self._zone = ObjectStore(self.url, self.archive_url)
        return self._zone


def landing_resource(settings: Settings) -> LandingResource:
    if settings.landing_url is not None:
        return ObjectLanding(
            url=settings.landing_url,
            archive_url=settings.archive_url,
            batch_rows=settings.batch_rows,
            max_record_bytes=settings.max_record_bytes,
        )
    return LocalLanding(
        root=str(settings.landing_dir) if settings.landing_dir else None,
        root_source=settings.landing_source,
        archive_dir=str(settings.archive_dir) if settings.archive_dir else None,
        batch_rows=settings.batch_rows,
        max_record_bytes=settings.max_record_bytes,
    )


def build_resources(
    settings: Settings,
    warehouse: PostgresResource | None = None,
    landing: LandingResource | None = None,
    naming: Naming = DEFAULT_NAMING,
) -> dict[str, object]:
    """The resources of the definitions, under `naming`'s keys: from the settings, or with a
    given warehouse and landing (the CLI's and the component's, which know them without the
    environment)."""
    warehouse = warehouse or PostgresResource.from_env(settings)
    return {
        naming.warehouse_key: warehouse,
        naming.landing_key: landing or landing_resource(settings),
        naming.staging_io_manager_key: StagingIOManager(warehouse=warehouse),
    }


def warehouse_of(context: Any, naming: Naming) -> PostgresResource:
    """The warehouse a step, check or sensor was given, under its definitions' key."""
    resource: PostgresResource = getattr(context.resources, naming.warehouse_key)
    return resource


def landing_of(context: Any, naming: Naming) -> LandingResource:
    resource: LandingResource = getattr(context.resources, naming.landing_key)
    return resource
