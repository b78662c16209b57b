"""The import rule of the README's "How a frame flows": dependencies between edged's units point one way,
down the layers; a unit imports only from its own layer's earlier units and from layers below. Read from
the source with `ast`, so an import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edged"

# Bottom first. Within a layer, a unit may import the units listed before it in that layer.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("logs", "metrics", "queues", "system_stats", "systemd", "events", "config"),
    ("supervise",),
    ("sources", "analysis", "inference", "memory"),
    ("scheduling",),
    ("control", "outputs", "api"),
    ("pipeline", "replay", "daemon", "export", "cli", "__main__"),
)
RANK = {unit: (layer, pos) for layer, units in enumerate(LAYERS) for pos, unit in enumerate(units)}


def unit_of(module: str) -> str:
    """`edged.analysis.kws.engine` -> `analysis`; `edged` itself -> `edged`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "edged"


def imports(path: Path, package: Path) -> list[tuple[int, str]]:
    """(line, module) of every `edged.*` import in a file, relative imports resolved."""
    module = ".".join(path.relative_to(package.parent).with_suffix("").parts)
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return [(line, name) for line, name in found if name.startswith("edged.")]


def violations(package: Path = PACKAGE) -> list[str]:
    out = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "__init__.py" and path.parent == package:
            continue  # the package's public surface re-exports from everywhere
        where = path.relative_to(package.parent)
        source = unit_of(".".join(where.with_suffix("").parts))
        for line, name in imports(path, package):
            target = unit_of(name)
            if target in (source, "edged"):
                continue
            if source not in RANK or target not in RANK:
                out.append(f"{where}:{line} {source} -> {target}: a unit the layers "
                           "do not list (add it to LAYERS and to the README)")
            elif RANK[target] >= RANK[source]:
                out.append(f"{where}:{line} {source} imports {name} ({target} is not "
                           "below it)")
    return out


def test_every_unit_is_in_a_layer() -> None:
    """A new folder or top-level module under edged/ must be placed in the layers on purpose."""
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    assert units - set(RANK) == set()


def test_dependencies_point_down() -> None:
    """No unit imports from its own layer's later units or from a layer above: no cycles between units."""
    assert violations() == []


@pytest.mark.parametrize(("source", "statement"), [
    ("config/schema.py", "from edged.sources.urls import redact_url"),  # the first release's cycles
    ("control/commands.py", "from edged.outputs.mqtt.link import Incoming"),
    ("analysis/faces.py", "    from edged.inference.manifest import sha256_file"),
    ("sources/video.py", "from ..scheduling import scheduler"),
])
def test_the_rule_catches_an_upward_import(tmp_path: Path, source: str, statement: str) -> None:
    """The check itself finds an upward import, top-level, inside a function or relative."""
    module = tmp_path / "edged" / source
    module.parent.mkdir(parents=True)
    body = f"def f():\n{statement}\n" if statement.startswith(" ") else f"{statement}\n"
    module.write_text(body)
    (found,) = violations(tmp_path / "edged")
    assert found.startswith(f"edged/{source}:")
