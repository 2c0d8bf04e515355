"""Load every contract in a directory; one broken contract never hides the others.

`load_contracts` returns the valid contracts and, separately, one `ContractError` per broken file,
each naming the file and the key (`columns[2].type: unknown column type 'strng'`). The Dagster
definitions show broken contracts as broken datasets instead of failing to load.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from elt_assets.contracts.model import Contract

MAX_CONTRACT_BYTES = 1_000_000
# Values a contract may hold once its YAML aliases are expanded. Aliases share one object while
# loading, but everything that walks the contract (validation, Dagster metadata, JSON) expands
# them: nine nested aliases of nine items (a "billion laughs") are 9**9 values.
MAX_YAML_VALUES = 100_000


@dataclass(frozen=True)
class ContractError:
    """A contract file that could not be loaded, and why."""

    path: Path
    message: str
    dataset: str | None = None  # the name, when the file got far enough to tell

    def __str__(self) -> str:
        return f"{self.path.name}: {self.message}"


@dataclass(frozen=True)
class ContractSet:
    contracts: list[Contract] = field(default_factory=list)
    errors: list[ContractError] = field(default_factory=list)
    sources: dict[str, Path] = field(default_factory=dict)  # dataset -> contract file

    def get(self, name: str) -> Contract:
        for contract in self.contracts:
            if contract.name == name:
                return contract
        raise KeyError(name)


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that rejects a key given twice in one mapping (PyYAML keeps the last silently)."""


# libyaml's parser (PyYAML's C extension, in its wheels) reads a contract in a sixth of the time
# of PyYAML's own, which costs about 6 ms a contract: with many datasets that is felt in every
# process that loads the definitions (a run's, a code server's, each `elt ingest`). Same
# constructors, so the same values.
_CSafeLoader: type[Any] | None = getattr(yaml, "CSafeLoader", None)
_FastUniqueKeyLoader: type[Any] | None = (
    type("_FastUniqueKeyLoader", (_CSafeLoader,), {}) if _CSafeLoader is not None else None
)
# libyaml builds nested nodes by recursion in C, with no limit: a document nested 100,000 deep
# (`[[[...` or `- - - ...`) crashes the process. A contract nests a few levels; one that might
# nest deeper than this is left to PyYAML's parser, whose recursion limit makes it a clear error.
MAX_FAST_NESTING = 1_000


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if not isinstance(key, Hashable):  # `? [a, b]` or `{[a]: 1}`: `in` would raise TypeError
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "a key must be a plain value, not a list or mapping",
                key_node.start_mark,
            )
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
if _FastUniqueKeyLoader is not None:
    _FastUniqueKeyLoader.add_constructor(
        yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
    )


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many values `node` stands for with its aliases expanded; refuses recursion and bombs.

    An alias is the very node of its anchor, so each node is counted once (memoised): linear in
    the document, whatever the expansion.
    """
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise yaml.composer.ComposerError(
            None,
            None,
            "an alias refers to a value that contains it (a recursive alias)",
            node.start_mark,
        )
    open_nodes.add(key)
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    total = 1
    for child in children:
        total += _expanded_size(child, sizes, open_nodes)
        if total > MAX_YAML_VALUES:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"with its aliases expanded the document holds more than {MAX_YAML_VALUES} "
                "values (an alias bomb?); a contract needs far fewer, write it out plainly",
                child.start_mark,
            )
    open_nodes.discard(key)
    sizes[key] = total
    return total


def _load_yaml(text: str, unique_keys: bool = True) -> Any:
    """yaml.load with a safe loader, refusing documents whose aliases expand too far (and, with
    `unique_keys`, a key given twice). Read by libyaml when it is there and the text cannot
    nest too deeply for it; a document it refuses is read again by PyYAML's own parser, so that
    errors always come in PyYAML's words, with its line and column."""
    fast = _FastUniqueKeyLoader if unique_keys else _CSafeLoader
    if fast is not None and _nesting_bound(text) <= MAX_FAST_NESTING:
        try:
            return _construct(fast, text)
        except (yaml.YAMLError, RecursionError):
            pass  # said below
    return _construct(_UniqueKeyLoader if unique_keys else yaml.SafeLoader, text)


def _construct(loader_class: type[Any], text: str) -> Any:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _nesting_bound(text: str) -> int:
    """How deep the text's collections can nest, at most. A block collection inside another
    starts at a greater column (`- - a` too), so block nesting is bounded by the longest line;
    flow collections by their brackets, quoted ones included (it can only overstate)."""
    longest = max(map(len, text.splitlines()), default=0)
    brackets = text.count("[") + text.count("{")
    if longest + brackets <= MAX_FAST_NESTING:
        return longest + brackets
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(depth - 1, 0)
    return longest + deepest


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in {"function-after[_checks_fit_type()]", "function-after[check_identifier()]"}:
            continue
        else:
            text += f".{part}" if text else str(part)
    return text.replace("schema_", "schema") or "(top level)"


def format_validation_error(error: ValidationError) -> str:
    """Pydantic's errors as `key: message` lines a person can act on."""
    lines = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see README 'Contract reference')"
        elif item["type"] == "missing":
            message = "required key is missing"
        location = _location(tuple(item["loc"]))
        # Whole-contract rules already name their key ("target.primary_key: ...").
        lines.append(
            message if location == "(top level)" and ": " in message else f"{location}: {message}"
        )
    return "; ".join(lines)


def parse_contract(path: Path) -> Contract:
    """Read one contract file; raises ContractError-shaped ValueError with file and key."""
    if path.stat().st_size > MAX_CONTRACT_BYTES:
        raise ValueError(f"larger than {MAX_CONTRACT_BYTES} bytes; is this really a contract?")
    try:
        document = _load_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except RecursionError:
        raise ValueError("invalid YAML: nested too deeply") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ValueError(f"invalid YAML at {where}{problem}") from None
    if not isinstance(document, dict):
        raise ValueError("must be a YAML mapping with keys name, source, target, columns")
    try:
        return Contract.model_validate(document)
    except ValidationError as error:
        raise ValueError(format_validation_error(error)) from None


def load_contracts(directory: Path) -> ContractSet:
    """Every *.yaml / *.yml contract in `directory` (not recursive), valid ones and errors apart.

    Two files that claim the same dataset name, or the same target table, are both refused:
    which one was meant cannot be known, so neither loads until one of them is changed.
    """
    parsed: list[tuple[Path, Contract]] = []
    errors: list[ContractError] = []
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            parsed.append((path, parse_contract(path)))
        except (ValueError, OSError) as error:
            errors.append(ContractError(path, str(error), _guess_name(path)))
    by_name = _claims(parsed, lambda c: c.name)
    by_table = _claims(parsed, lambda c: f"{c.target.schema_}.{c.target.table}".lower())
    contracts: list[Contract] = []
    sources: dict[str, Path] = {}
    for path, contract in parsed:
        clash = _clash("dataset name", contract.name, by_name, path) or _clash(
            "target table",
            f"{contract.target.schema_}.{contract.target.table}".lower(),
            by_table,
            path,
        )
        if clash:
            errors.append(ContractError(path, clash, contract.name))
            continue
        contracts.append(contract)
        sources[contract.name] = path
    return ContractSet(contracts, errors, sources)


def _claims(
    parsed: list[tuple[Path, Contract]], what: Callable[[Contract], str]
) -> dict[str, list[Path]]:
    claims: dict[str, list[Path]] = {}
    for path, contract in parsed:
        claims.setdefault(what(contract), []).append(path)
    return claims


def _clash(kind: str, value: str, claims: dict[str, list[Path]], path: Path) -> str | None:
    """Why `path` may not load when other files claim the same `value`, else None."""
    others = [other.name for other in claims[value] if other != path]
    if not others:
        return None
    return (
        f"{kind} {value!r} is also claimed by {', '.join(others)}; which one is meant is unknown, "
        f"so none of them loads: rename the dataset (or change the target) in all but one"
    )


def _guess_name(path: Path) -> str | None:
    """The dataset name of a broken contract, if its `name:` key can still be read."""
    try:
        document = _load_yaml(path.read_text(encoding="utf-8"), unique_keys=False)
    except Exception:
        document = None
    name = document.get("name") if isinstance(document, dict) else None
    return name if isinstance(name, str) and name.isidentifier() and name.islower() else None
