"""One error taxonomy: every platform error is terminal or transient (unknown ones: terminal)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import elt_assets
from elt_assets.errors import EltError, TerminalError, TransientError

pytestmark = [pytest.mark.pure]


def platform_exceptions() -> list[type[BaseException]]:
    """Every public exception class defined in the package (private control-flow signals aside)."""
    found = []
    for module_info in pkgutil.walk_packages(elt_assets.__path__, "elt_assets."):
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
                and not name.startswith("_")
            ):
                found.append(value)
    return found


def test_every_platform_error_is_terminal_or_transient() -> None:
    errors = platform_exceptions()
    assert len(errors) >= 14  # the walk really found the package's errors
    strays = [
        f"{error.__module__}.{error.__qualname__}"
        for error in errors
        if error not in (EltError, TerminalError, TransientError)
        and issubclass(error, TerminalError) == issubclass(error, TransientError)
    ]
    assert strays == []
