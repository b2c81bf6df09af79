"""Paper specs as data: one YAML file per paper, validated against ``schema.yaml``
before anything runs."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from ..errors import SpecError, UnknownNameError

HERE = Path(__file__).parent


class DuplicateKeyError(yaml.YAMLError):
    pass


class SafeLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):   # libyaml when present: same result, faster
    """yaml's safe loader, refusing a key written twice in one mapping (yaml keeps the last)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":   # `<<: *anchor`: explicit keys override it
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise DuplicateKeyError(f"line {line}: duplicate key {key!r} (first at line {seen[key]})")
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


@lru_cache(maxsize=None)
def schema() -> dict[str, Any]:
    return yaml.safe_load((HERE / "schema.yaml").read_text())


def validate(document: Any, kind: str, where: str) -> None:
    """Raise one SpecError naming the file, the location and the problem."""
    import jsonschema

    full = {**schema()[kind], "$defs": schema()["$defs"]}
    errors = sorted(jsonschema.Draft202012Validator(full).iter_errors(document), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        path = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise SpecError(f"{where}: at {path}: {e.message}{more}")


def read_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(), Loader=SafeLoader)
    except DuplicateKeyError as e:
        raise SpecError(f"{path}, {e}") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from None


def names() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.yaml") if p.stem != "schema")


def _cached(path: Path) -> dict[str, Any]:
    """The spec at ``path``, read and schema-checked once per content: every job of a workflow
    plans again, and YAML parsing and schema validation were most of that (results/cache/specs/)."""
    import hashlib
    import json

    from ..layout import cache_root

    data = path.read_bytes()
    key = hashlib.sha256(data + (HERE / "schema.yaml").read_bytes()).hexdigest()[:20]
    cache = cache_root() / "specs" / f"{path.stem}-{key}.json"
    if cache.is_file():
        try:
            return json.loads(cache.read_text())
        except ValueError:   # a damaged cache entry: read the spec again
            pass
    spec = read_yaml(path)
    validate(spec, "spec", str(path))
    from ..fileio import write_text

    try:   # key order kept (a table's columns and published values pair by position)
        write_text(cache, json.dumps(spec))
    except OSError:          # a read-only cache: plan without it
        pass
    return json.loads(json.dumps(spec))   # the same types whether read from the cache or not


def load(paper: str, path: Path | None = None) -> dict[str, Any]:
    """The spec of ``paper`` (or the file at ``path``), validated."""
    if path is None:
        if paper not in names():
            raise UnknownNameError(f"unknown paper {paper!r}; known: {', '.join(names())}")
        path = HERE / f"{paper}.yaml"
    spec = _cached(path)
    if spec["paper"] != paper:   # so two files can never claim the same paper
        raise SpecError(f"{path}: paper: {spec['paper']!r} differs from its file name ({paper!r}): "
                        f"each paper has one spec file, named after its id")
    return spec
