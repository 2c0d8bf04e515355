"""Resources the assets and sensors share: the landing zone and the warehouse."""

from pathlib import Path

import dagster as dg

from elt_assets.landing.files import resolve_inside
from elt_assets.postgres.io_manager import StagingIOManager
from elt_assets.postgres.resource import PostgresResource
from elt_assets.settings import Settings


class LandingZone(dg.ConfigurableResource):
    """The directory files land in (ELT_LANDING_DIR). Files are read, never changed or deleted,
    except that with ELT_ARCHIVE_DIR set a loaded file is moved there (landing/archive.py)."""

    root_env: str = "ELT_LANDING_DIR"

    def root(self) -> Path:
        # ELT_ARCHIVE_DIR is checked here too, before any step or tick works.
        return Settings.from_env().require_landing_dir()

    def path(self, relative_path: str) -> Path:
        """The absolute path of a landed file; never outside the landing directory."""
        return resolve_inside(self.root(), relative_path)


def build_resources() -> dict[str, object]:
    warehouse = PostgresResource()
    return {
        "warehouse": warehouse,
        "landing": LandingZone(),
        "staging_io_manager": StagingIOManager(warehouse=warehouse),
    }
