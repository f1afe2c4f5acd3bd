"""The package is layered (docs/design.md, "The map"): a module imports only its own layer
and the layers above it in the map, never one below, lazily or not; and nothing imports the
CLI, which itself runs no query: it calls services and imports no store module. Read from
the source with `ast`, so a moved or added module is checked as it lands."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "badged"

# Where each part of the package sits; a lower number is a higher floor of the map.
LAYERS = {
    "__init__": 0,  # the version, nothing else
    "clock": 0,
    "leftovers": 0,
    "config": 1,
    "store": 2,
    "cards": 3,
    "crous": 4,
    "access": 4.5,
    "enrolment": 5,
    "testing": 5.5,
    "daemon": 6,
    "doctor": 6.5,
    "demo": 6.5,
    "cli": 7,
    "__main__": 7,
}


def part_of(module: str) -> str:
    """`badged.crous.mail` → `crous`; `badged.clock` → `clock`."""
    return module.split(".")[1] if module.count(".") else "__init__"


def badged_imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import of a badged module in `path`."""
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    here = list(relative.parts if path.name == "__init__.py" else relative.parts[:-1])
    if path.name == "__init__.py":
        here = here[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("badged."):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if not module.startswith("badged"):
                continue
            if module == "badged":
                for alias in node.names:
                    name = alias.name
                    submodule = (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").exists()
                    yield node.lineno, f"badged.{alias.name}" if submodule else "badged"
            else:
                yield node.lineno, module


def test_no_module_imports_a_layer_below_its_own() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        mine = part_of(module)
        for line, imported in badged_imports(path):
            theirs = part_of(imported)
            if theirs != mine and LAYERS[theirs] > LAYERS[mine]:
                where = path.relative_to(PACKAGE.parent)
                wrong.append(f"{where}:{line}: {mine} imports {imported}")
    assert not wrong, "imports running back up the map:\n" + "\n".join(wrong)


def test_the_cli_imports_no_store_module() -> None:
    """Commands parse, call a service, print: the store is the services' to open."""
    wrong = []
    for path in sorted((PACKAGE / "cli").rglob("*.py")):
        for line, imported in badged_imports(path):
            if part_of(imported) == "store":
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: imports {imported}")
    assert not wrong, "the CLI reaches into the store:\n" + "\n".join(wrong)


def test_every_part_of_the_package_has_a_layer() -> None:
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"}
    assert parts == set(LAYERS), "the map in docs/design.md and LAYERS list the same parts"
