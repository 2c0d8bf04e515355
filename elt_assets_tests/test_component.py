"""elt-assets as a library (issue 21): `build_elt_defs` and the component's attributes, built in
process. The whole path through `dg` (scaffold, check, dev, a file loaded) from a user's own
project is `test_outside_in.py::test_two_scaffolded_components_load_files_in_a_users_own_project`.
"""

from __future__ import annotations

import logging
import re
import textwrap
import warnings
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml

from elt_assets import EltAssetsComponent, build_elt_defs
from elt_assets.contracts.loader import load_contracts
from elt_assets.orchestration.instance import missing_settings
from elt_assets_tests.helpers import readme_instance_snippet

pytestmark = [pytest.mark.pure]

README = Path(__file__).resolve().parent.parent / "README.md"
CONTRACT = """
name: {name}
source: {{glob: "{name}/*.csv"}}
target: {{schema: shop, table: {name}, primary_key: [id]}}
columns:
  - {{name: id, type: bigint, nullable: false}}
"""


def contract_file(directory: Path, name: str, extra: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(textwrap.dedent(CONTRACT.format(name=name)).strip() + "\n" + extra)
    return path


class Store(dg.ConfigurableResource):
    where: str = "here"


@dg.asset
def shop_report(warehouse: Store, landing: Store) -> None:
    """A project's own asset, on resources named as a platform would name its own."""


def test_two_sets_and_a_projects_own_definitions_merge_without_collision(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not one warning, Dagster's included
        orders = build_elt_defs(
            contract_file(tmp_path / "a", "orders"),
            landing,
            name="a",
            database_url_env="SHOP_ORDERS_URL",
            key_prefix=["wh"],
            group_name="sales",
            owners=["team:data"],
            tags={"domain": "sales"},
            pool="shop_db",
        )
        contract_file(tmp_path / "b", "customers", "group: crm\n")
        customers = build_elt_defs(tmp_path / "b", landing, name="b")
        own = dg.Definitions(
            assets=[shop_report], resources={"warehouse": Store(), "landing": Store(where="x")}
        )
        merged = dg.Definitions.merge(own, orders, customers)
        repository = merged.get_repository_def()
        jobs = {job.name for job in repository.get_all_jobs()}
        graph = repository.asset_graph
    assert {"ingest_orders", "ingest_customers", "prune_staging_a", "prune_staging_b"} <= jobs
    resources = merged.resources or {}
    assert {"warehouse", "landing", "elt_warehouse_a", "elt_landing_b"} <= set(resources)
    # The URL is named by its variable, never held: the UI shows the name only.
    assert resources["elt_warehouse_a"].url == dg.EnvVar("SHOP_ORDERS_URL")

    target = graph.get(dg.AssetKey(["wh", "shop", "orders"]))
    assert graph.get(dg.AssetKey(["wh", "raw", "orders_files"])).group_name == "sales"
    assert (target.group_name, target.owners) == ("sales", ["team:data"])
    assert target.tags.get("domain") == "sales"
    assert graph.get(dg.AssetKey(["shop", "customers"])).group_name == "crm"  # the contract's
    staged = merged.get_assets_def(dg.AssetKey(["wh", "staged", "orders_staging"]))
    assert staged.op.pool == "shop_db"


def test_an_attribute_dagster_would_refuse_is_named(tmp_path: Path) -> None:
    path = contract_file(tmp_path, "orders")
    with pytest.raises(ValueError, match="owner 'nobody': an owner is an e-mail address"):
        build_elt_defs(path, tmp_path, owners=["nobody"])
    with pytest.raises(ValueError, match="tag 'a b'"):
        build_elt_defs(path, tmp_path, tags={"a b": "x"})


def test_a_contract_with_a_bad_tag_is_one_broken_contract(tmp_path: Path) -> None:
    contract_file(tmp_path, "orders", "tags: {team: 'not ok!'}\n")
    contract_file(tmp_path, "customers", "owners: [ada@example.com]\n")
    loaded = load_contracts(tmp_path)
    assert [c.name for c in loaded.contracts] == ["customers"]
    (error,) = loaded.errors
    assert "tag team: 'not ok!'" in error.message
    definitions = build_elt_defs(loaded, tmp_path, name="x")
    assert dg.AssetKey(["broken_contracts", "orders_yaml"]) in {
        key
        for a in definitions.assets or []
        for key in a.keys  # type: ignore[union-attr]
    }


def test_every_attribute_of_the_component_is_in_the_readme() -> None:
    text = README.read_text()
    block = text.split("## Use it in your own Dagster project", 1)[1].split("```yaml", 1)[1]
    block = block.split("```", 1)[0]
    written = set(re.findall(r"^\s*#?\s*([a-z_]+):", block, re.MULTILINE))
    assert set(EltAssetsComponent.model_fields) <= written


def test_the_translation_gives_each_table_kinds_automation_and_freshness(tmp_path: Path) -> None:
    """The YAML templates Dagster's components understand, resolved as `dg` resolves them."""
    contract_file(tmp_path / "c", "orders")
    contract_file(tmp_path / "c", "customers", "freshness_hours: 6\n")
    component = EltAssetsComponent.resolve_from_yaml(
        textwrap.dedent(
            """
            contracts: c
            landing: landing
            translation:
              kinds: [sales]
              automation_condition: "{{ dg.AutomationCondition.on_cron('0 6 * * *') }}"
              freshness_policy: >-
                {{ dg.FreshnessPolicy.time_window(fail_window=datetime.timedelta(hours=26)) }}
            """
        )
    )
    translation = component.translation
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graph = (
            build_elt_defs(
                tmp_path / "c",
                tmp_path / "landing",
                name="t",
                kinds=translation.kinds,
                automation_condition=translation.automation_condition,
                freshness_policy=translation.freshness_policy,
            )
            .get_repository_def()
            .asset_graph
        )
    orders = graph.get(dg.AssetKey(["shop", "orders"]))
    assert orders.kinds == {"postgres", "sales"}
    assert orders.automation_condition == dg.AutomationCondition.on_cron("0 6 * * *")
    assert orders.freshness_policy == dg.FreshnessPolicy.time_window(
        fail_window=timedelta(hours=26)
    )
    # A contract's own freshness comes first; the file assets keep their own kinds.
    customers = graph.get(dg.AssetKey(["shop", "customers"]))
    assert customers.freshness_policy == dg.FreshnessPolicy.time_window(
        fail_window=timedelta(hours=6)
    )
    assert "sales" not in graph.get(dg.AssetKey(["staged", "orders_staging"])).kinds
    with pytest.raises(dg.DagsterInvalidDefinitionError, match=r"translation\.kinds: 'a b'"):
        build_elt_defs(tmp_path / "c", tmp_path, kinds=["a b"])


def test_the_instance_settings_the_platform_relies_on_are_checked_where_code_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # What the platform ships and what the README tells a project to add both have them all.
    shipped = yaml.safe_load((README.parent / "dagster.yaml").read_text())
    assert missing_settings(shipped) == {}
    assert missing_settings(readme_instance_snippet()) == {}

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("run_retries: {enabled: false}\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    path = contract_file(tmp_path / "c", "orders")
    with caplog.at_level(logging.WARNING, logger="elt_assets"):
        build_elt_defs(path, tmp_path, name="one")
    (message,) = [r.getMessage() for r in caplog.records if "lacks settings" in r.getMessage()]
    assert str(home / "dagster.yaml") in message
    for setting in ("run_retries: a run whose process was killed", "run_monitoring", "python_logs"):
        assert setting in message
    assert "Use it in your own Dagster project" in message
    caplog.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per instance, not once per component
        build_elt_defs(path, tmp_path, name="two")
        monkeypatch.delenv("DAGSTER_HOME")  # which instance will run it is not known: silent
        other = tmp_path / "unknown"
        build_elt_defs(path, other, name="three")
    assert not [r for r in caplog.records if "lacks settings" in r.getMessage()]
