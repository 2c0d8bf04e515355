"""elt-assets: files landing in a directory become clean, typed PostgreSQL tables, with Dagster.

As a library: `EltAssetsComponent` (for `dg`, defs.yaml) and `build_elt_defs` (Python). They are
imported on first use, so `elt --help` does not pay for importing Dagster.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from elt_assets.component import EltAssetsComponent, build_elt_defs

__all__ = ["EltAssetsComponent", "build_elt_defs"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from elt_assets import component

        return getattr(component, name)
    raise AttributeError(f"module 'elt_assets' has no attribute {name!r}")


def __dir__() -> list[str]:  # `dg list components` looks for components with dir()
    return sorted([*globals(), *__all__])
