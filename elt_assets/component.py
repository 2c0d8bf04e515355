"""elt-assets inside any Dagster project: the `EltAssetsComponent` for `dg`, and `build_elt_defs`
for Python. Both build exactly what the platform's own `elt dev` serves (definitions.py): per
dataset the raw -> staged -> target assets with their checks, the ingestion and batch jobs and the
file sensor, plus the daily staging maintenance.

    # src/<project>/defs/orders/defs.yaml, from:
    #   dg scaffold defs elt_assets.EltAssetsComponent orders
    type: elt_assets.EltAssetsComponent
    attributes:
      contracts: orders.yaml            # a contract file or a directory of them (or `contract:`)
      landing: /data/landing            # where the files arrive
      database_url_env: ORDERS_DB_URL   # the variable that holds the warehouse URL

Nothing collides: resource keys, the pool and the maintenance job carry the instance's name, and
every setting is an attribute (nothing is read from ELT_* variables or the working directory). The
database URL is named by its environment variable, never written in YAML, and the UI shows only
that name. The platform's own tables (schema `elt`) are created and migrated by the first run or
sensor tick that needs them, as the owner, under a lock: a project never has to run `elt`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Optional

import dagster as dg
import yaml
from pydantic import ConfigDict, Field

from elt_assets.contracts.loader import ContractError, ContractSet, load_contracts, parse_contract
from elt_assets.contracts.model import (
    Contract,
    GroupName,
    Owners,
    Tags,
    check_group,
    check_owners,
    check_tags,
)
from elt_assets.definitions import build_definitions
from elt_assets.orchestration.instance import warn_about_instance_settings
from elt_assets.orchestration.names import WAREHOUSE_POOL, Naming, TableAttributes
from elt_assets.orchestration.resources import build_resources
from elt_assets.orchestration.resources import landing_resource as landing_from_settings
from elt_assets.orchestration.sensors import Discovery
from elt_assets.postgres.resource import PostgresResource
from elt_assets.settings import (
    MAX_BATCH_FILES,
    AlertSettings,
    Settings,
    is_landing_url,
    landing_url,
)

__all__ = ["EltAssetsComponent", "build_elt_defs"]

DEFAULT_SENSOR_SECONDS = 30


def build_elt_defs(
    contracts: ContractSet | Path | str,
    landing: Path | str,
    *,
    name: str | None = None,
    database_url_env: str = "ELT_DATABASE_URL",
    owner_database_url_env: str | None = None,
    set_up_database: bool = True,
    archive_dir: Path | str | None = None,
    key_prefix: Sequence[str] = (),
    group_name: str | None = None,
    owners: Sequence[str] = (),
    tags: Mapping[str, str] | None = None,
    kinds: Sequence[str] = (),
    automation_condition: dg.AutomationCondition | None = None,
    freshness_policy: dg.FreshnessPolicy | None = None,
    pool: str = WAREHOUSE_POOL,
    sensor_interval_seconds: int = DEFAULT_SENSOR_SECONDS,
    sensor_running: bool = True,
    max_runs_per_tick: int | None = None,
    file_quiet_seconds: int | None = None,
    batch_threshold: int | None = None,
    batch_max_files: int | None = None,
    max_listed_per_tick: int | None = None,
    staging_retention_hours: int | None = None,
    partition_retention_days: int | None = None,
) -> dg.Definitions:
    """The definitions of these datasets, ready to merge with a project's own.

    `contracts`: a contract file, a directory of contracts, or a loaded `ContractSet`.
    `landing`: the directory the files arrive in, or s3://BUCKET/PREFIX. `name`: what this
    set's resource keys and maintenance job are suffixed with (default: the datasets' names).
    The warehouse URL is read from the variable `database_url_env` when a run or tick starts
    (DDL and migrations use `owner_database_url_env`, default the same). `key_prefix`,
    `group_name`, `owners` and `tags` apply to every dataset's assets (a contract's own group,
    owners and tags come first); `kinds`, `automation_condition` and `freshness_policy` to each
    table's asset (a contract's `freshness_hours` comes first).
    Unset numbers take the platform's defaults (README, Configuration).
    """
    contract_set = _contract_set(contracts)
    check_group(group_name)
    check_owners(list(owners))
    check_tags(dict(tags or {}))
    _check_kinds(kinds)
    contract_set = _translated(contract_set, group_name, list(owners), dict(tags or {}))
    where = name or "elt-assets component"
    zone = _zone_settings(Settings.from_env({}), where, landing, archive_dir)
    settings = replace(  # an unset number keeps the platform's default
        zone,
        sensor_interval_seconds=sensor_interval_seconds,
        max_runs_per_tick=_given(max_runs_per_tick, zone.max_runs_per_tick),
        file_quiet_seconds=_given(file_quiet_seconds, zone.file_quiet_seconds),
        batch_threshold=_given(batch_threshold, zone.batch_threshold),
        batch_max_files=_given(batch_max_files, zone.batch_max_files),
        max_listed_per_tick=_given(max_listed_per_tick, zone.max_listed_per_tick),
        staging_retention_hours=_given(staging_retention_hours, zone.staging_retention_hours),
        partition_retention_days=_given(partition_retention_days, zone.partition_retention_days),
    )
    naming = Naming(
        suffix=_identifier(name or "_".join(sorted(c.name for c in contract_set.contracts))),
        pool=pool,
        key_prefix=tuple(key_prefix),
        table=TableAttributes(tuple(kinds), automation_condition, freshness_policy),
    )
    warehouse = PostgresResource(
        url=dg.EnvVar(database_url_env),
        owner_url=dg.EnvVar(owner_database_url_env) if owner_database_url_env else None,
        set_up_platform=set_up_database,
        file_wait_minutes=settings.file_wait_minutes,
    )
    landing_resource = landing_from_settings(settings)
    discovery = replace(Discovery.from_settings(settings), running_by_default=sensor_running)
    resources = build_resources(settings, warehouse, landing_resource, naming)
    warn_about_instance_settings()
    # Alerts are configured as on the platform, by ELT_ALERT_* variables (their URLs are
    # secrets) and each contract's `alerts`.
    alerts = AlertSettings.from_env()
    return build_definitions(contract_set, settings, resources, discovery, naming, alerts)


def _check_kinds(kinds: Sequence[str]) -> None:
    for kind in kinds:
        if not isinstance(kind, str) or not _KIND.fullmatch(kind):
            raise dg.DagsterInvalidDefinitionError(
                f"translation.kinds: {kind!r} is not a kind Dagster can show; use letters, "
                "digits, '_', '-' or '.' (at most 63), e.g. [sales, s3]"
            )


_KIND = re.compile(r"[A-Za-z0-9_.-]{1,63}")


def _given(value: int | None, default: int) -> int:
    return default if value is None else value


def _zone_settings(
    defaults: Settings, where: str, landing: Path | str, archive_dir: Path | str | None
) -> Settings:
    """The settings with this landing zone (a directory or s3://) and its archive, checked."""
    url = landing_url(f"landing ({where})", str(landing))
    archive = landing_url(f"archive_dir ({where})", str(archive_dir or ""))
    settings = replace(
        defaults,
        landing_dir=None if url else Path(landing).resolve(),
        landing_url=url,
        landing_source=f"landing ({where})",
        archive_dir=Path(archive_dir).resolve() if archive_dir and not archive else None,
        archive_url=archive,
    )
    if url:
        settings.require_landing()  # an archive that does not fit the bucket is refused here
    return settings


def _contract_set(contracts: ContractSet | Path | str) -> ContractSet:
    if isinstance(contracts, ContractSet):
        return contracts
    path = Path(contracts)
    if path.is_dir():
        return load_contracts(path)
    try:
        contract = parse_contract(path)
    except (ValueError, OSError) as error:
        return ContractSet(errors=[ContractError(path, str(error))])
    return ContractSet([contract], sources={contract.name: path})


def _translated(
    contract_set: ContractSet, group: str | None, owners: list[str], tags: dict[str, str]
) -> ContractSet:
    """The contracts with the instance's group, owners and tags where they set none."""
    contracts = [
        contract.model_copy(
            update={
                "group": contract.group or group,
                "owners": contract.owners or owners,
                "tags": {**tags, **contract.tags},
            }
        )
        for contract in contract_set.contracts
    ]
    return replace(contract_set, contracts=contracts)


def _identifier(text: str) -> str:
    """A suffix Dagster accepts in resource keys and job names."""
    return re.sub(r"[^A-Za-z0-9_]", "_", text)[:60] or "elt"


class Translation(dg.Resolvable, dg.Model):
    """How the datasets' assets show in Dagster (a contract's own settings come first)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)  # Dagster's own policy objects

    key_prefix: list[str] = Field(
        default_factory=list, description="Put before every asset key, e.g. [warehouse]."
    )
    group_name: GroupName = Field(
        default=None, description="The assets' group (default: the dataset's name)."
    )
    owners: Owners = Field(
        default_factory=list, description="E-mail addresses or team:name, on every asset."
    )
    tags: Tags = Field(default_factory=dict, description="Tags on every asset.")
    kinds: list[str] = Field(
        default_factory=list,
        description="Kinds shown on each table's asset beside postgres, e.g. [sales].",
    )
    automation_condition: Annotated[
        dg.AutomationCondition | None,
        dg.Resolver.default(
            model_field_type=Optional[str],  # noqa: UP045 (a YAML template string)
            description="Each table's automation condition for Dagster's declarative "
            'automation, e.g. "{{ dg.AutomationCondition.eager() }}" (default none: the '
            "file sensors load the files).",
        ),
    ] = None
    freshness_policy: Annotated[
        dg.FreshnessPolicy | None,
        dg.Resolver.default(
            model_field_type=Optional[str],  # noqa: UP045 (a YAML template string)
            description="Each table's freshness policy where its contract sets no "
            'freshness_hours, e.g. "{{ dg.FreshnessPolicy.time_window(fail_window='
            'datetime.timedelta(hours=26)) }}".',
        ),
    ] = None


class Sensor(dg.Resolvable, dg.Model):
    """How the file sensor of each dataset watches the landing directory."""

    interval_seconds: int = Field(
        default=DEFAULT_SENSOR_SECONDS, ge=1, le=3600, description="Seconds between two scans."
    )
    running: bool = Field(
        default=True, description="Whether the sensors run until someone stops them in the UI."
    )
    max_runs_per_tick: int | None = Field(
        default=None, ge=1, description="Most files one tick takes (default 1000)."
    )
    quiet_seconds: int | None = Field(
        default=None,
        ge=0,
        le=3600,
        description="A file is taken once nothing has written to it for this long (default 2).",
    )
    batch_threshold: int | None = Field(
        default=None,
        ge=0,
        description="More new files than this in one tick are loaded by batch runs (default 10).",
    )
    batch_max_files: int | None = Field(
        default=None,
        ge=1,
        le=MAX_BATCH_FILES,
        description="Most files one batch run loads (default 100, at most 2,000).",
    )
    max_listed_per_tick: int | None = Field(
        default=None,
        ge=1,
        description="Most objects one tick lists in an s3:// landing (default 10,000); the "
        "next tick lists on from there.",
    )


class EltAssetsScaffoldParams(dg.Model):
    landing: str = Field(default="landing", description="The landing directory.")
    database_url_env: str = Field(
        default="ELT_DATABASE_URL", description="The variable holding the warehouse URL."
    )


class EltAssetsScaffolder(dg.Scaffolder[EltAssetsScaffoldParams]):
    """Writes a defs.yaml and a starter contract named after the folder."""

    @classmethod
    def get_scaffold_params(cls) -> type[EltAssetsScaffoldParams]:
        return EltAssetsScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[EltAssetsScaffoldParams]) -> None:
        folder = request.target_path
        folder.mkdir(parents=True, exist_ok=True)
        dataset = _identifier(folder.name.lower()).strip("_") or "dataset"
        params = request.params or EltAssetsScaffoldParams()
        (folder / f"{dataset}.yaml").write_text(STARTER_CONTRACT.format(name=dataset))
        (folder / "defs.yaml").write_text(
            STARTER_DEFS.format(
                type=request.type_name,
                contract=f"{dataset}.yaml",
                landing=yaml.safe_dump(params.landing, default_style='"').strip(),
                database_url_env=params.database_url_env,
            )
        )


@dg.scaffold_with(EltAssetsScaffolder)
class EltAssetsComponent(dg.Component, dg.Resolvable, dg.Model):
    """Files landing in a directory become clean, typed, up-to-date PostgreSQL tables.

    Each dataset is described by a YAML contract (columns, PostgreSQL types, primary key,
    checks, policies). Every file is a partition of three assets (raw -> staged -> target):
    parsed in bounded batches, validated with pandera, COPYed into a staging slice, then
    upserted on the primary key (or appended) in one transaction with its manifest row. Bad
    rows go to a quarantine table with reasons; a bad file fails on its own partition. A sensor
    per dataset finds new and changed files.
    """

    contracts: str | None = Field(
        default=None,
        description="A contract file, or a directory of contracts (*.yaml), relative to this "
        "folder. Or give one contract inline as `contract`.",
    )
    contract: dict[str, Any] | None = Field(
        default=None, description="One contract, written inline (the keys of a contract file)."
    )
    landing: str = Field(
        description="Where the files arrive: a directory (relative paths: to this folder) or "
        "s3://BUCKET/PREFIX (endpoint and credentials from the AWS_* variables). Checked when "
        "the sensor first looks, not when the code loads."
    )
    archive_dir: str | None = Field(
        default=None,
        description="Where a file moves once its load committed: a directory on the landing's "
        "filesystem outside it, or s3://BUCKET/PREFIX beside an s3:// landing. Unset: landing "
        "files are never moved.",
    )
    database_url_env: str = Field(
        default="ELT_DATABASE_URL",
        description="The name of the environment variable that holds the warehouse URL "
        "(postgresql://user:password@host/db) of the role that loads. Never the URL itself: "
        "the UI shows this name only.",
    )
    owner_database_url_env: str | None = Field(
        default=None,
        description="The variable holding the URL of the role that owns the tables (DDL, "
        "migrations). Default: the same as database_url_env (one role does both).",
    )
    set_up_database: bool = Field(
        default=True,
        description="Create and migrate the platform's tables (schema elt) on first use.",
    )
    translation: Translation = Field(
        default_factory=Translation,
        description="Key prefix, group, owners, tags, kinds, automation condition, freshness.",
    )
    pool: str = Field(
        default=WAREHOUSE_POOL,
        description="The Dagster concurrency pool the writing steps take a slot of (set its "
        "limit with `dagster instance concurrency set <pool> N`).",
    )
    sensor: Sensor = Field(default_factory=Sensor, description="How the file sensors run.")
    staging_retention_hours: int = Field(
        default=168,
        ge=0,
        description="Staging slices of files loaded longer ago than this are deleted daily; "
        "0 keeps them (and schedules no maintenance).",
    )
    partition_retention_days: int = Field(
        default=90,
        ge=0,
        description="Partitions of files loaded longer ago than this are removed daily (the "
        "manifest, quarantine and rows stay); 0 keeps them.",
    )
    name: str | None = Field(
        default=None,
        description="Suffix of this instance's resource keys and maintenance job (default: "
        "the folder's path under defs/).",
    )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        folder = context.path
        return build_elt_defs(
            self._contracts(folder),
            self._local_or_url(folder, self.landing) or folder,
            name=self.name or self._instance_name(context),
            database_url_env=self.database_url_env,
            owner_database_url_env=self.owner_database_url_env,
            set_up_database=self.set_up_database,
            archive_dir=self._local_or_url(folder, self.archive_dir),
            key_prefix=self.translation.key_prefix,
            group_name=self.translation.group_name,
            owners=self.translation.owners,
            tags=self.translation.tags,
            kinds=self.translation.kinds,
            automation_condition=self.translation.automation_condition,
            freshness_policy=self.translation.freshness_policy,
            pool=self.pool,
            sensor_interval_seconds=self.sensor.interval_seconds,
            sensor_running=self.sensor.running,
            max_runs_per_tick=self.sensor.max_runs_per_tick,
            file_quiet_seconds=self.sensor.quiet_seconds,
            batch_threshold=self.sensor.batch_threshold,
            batch_max_files=self.sensor.batch_max_files,
            max_listed_per_tick=self.sensor.max_listed_per_tick,
            staging_retention_hours=self.staging_retention_hours,
            partition_retention_days=self.partition_retention_days,
        )

    def _contracts(self, folder: Path) -> ContractSet | Path:
        if (self.contracts is None) == (self.contract is None):
            raise dg.DagsterInvalidDefinitionError(
                f"{folder / 'defs.yaml'}: give exactly one of `contracts` (a file or directory) "
                "and `contract` (one contract inline)"
            )
        if self.contract is None:
            return folder / str(self.contracts)
        origin = folder / "defs.yaml"
        try:
            contract = Contract.model_validate(self.contract)
        except ValueError as error:
            return ContractSet(errors=[ContractError(origin, f"contract: {error}")])
        return ContractSet([contract], sources={contract.name: origin})

    @staticmethod
    def _local_or_url(folder: Path, value: str | None) -> Path | str | None:
        """A URL as it is; a path relative to this folder."""
        if not value:
            return None
        return value if is_landing_url(value) else folder / value

    @staticmethod
    def _instance_name(context: dg.ComponentLoadContext) -> str:
        try:
            relative = context.path.relative_to(context.defs_module_path)
        except ValueError:
            relative = Path(context.path.name)
        return "_".join(relative.parts) or context.path.name


STARTER_DEFS = """\
type: {type}

attributes:
  # The dataset's contract (columns, types, primary key, checks, policies): see the README of
  # elt-assets, "Adding a dataset". A directory of contracts works too.
  contracts: {contract}
  # Where the files arrive (relative paths are relative to this folder).
  landing: {landing}
  # The environment variable holding the warehouse URL, never the URL itself.
  database_url_env: {database_url_env}
  # translation: {{key_prefix: [warehouse], group_name: sales, owners: [team:data]}}
  # sensor: {{interval_seconds: 30, running: true}}
"""

STARTER_CONTRACT = """\
# A starter contract: describe your files here (README of elt-assets, "Adding a dataset").
name: {name}
description: Rows from the {name} files.
source:
  glob: "{name}/*.{{csv,csv.gz}}"  # relative to the landing directory; {{a,b}} for either
target:
  schema: analytics
  table: {name}
  mode: upsert
  primary_key: [id]
  version_column: updated_at   # an older file never overwrites a newer row
columns:
  - {{name: id, type: bigint, nullable: false}}
  - {{name: label, type: text}}
  - {{name: updated_at, type: timestamptz, nullable: false}}
policy:
  bad_rows: quarantine
  max_bad_row_ratio: 0.05
"""
