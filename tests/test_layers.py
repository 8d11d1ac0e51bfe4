"""The three bands of imports: domain code imports nothing heavy; only the CLI wires."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "valuetune"
HEAVY = {"torch", "transformers", "trl", "peft", "fastapi", "uvicorn", "httpx", "requests"}
# band -> modules it must not import (top-level names or valuetune sub-packages)
FORBIDDEN = {
    "values": HEAVY
    | {"sqlalchemy", "alembic", "typer", "rich", "valuetune.store", "valuetune.cli"},
    "token": HEAVY
    | {"sqlalchemy", "alembic", "typer", "rich", "valuetune.store", "valuetune.cli", "numpy"},
    "store": HEAVY | {"typer", "rich", "valuetune.cli"},
}
DOMAIN_FILES = ["canonical.py", "errors.py", "settings.py"]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _violations(path: Path, forbidden: set[str]) -> list[str]:
    bad = []
    for name in _imports(path):
        for banned in forbidden:
            if name == banned or name.startswith(banned + "."):
                bad.append(f"{path.relative_to(PACKAGE)} imports {name}")
    return bad


def test_domain_and_stage_bands_import_nothing_they_should_not() -> None:
    bad: list[str] = []
    for band, forbidden in FORBIDDEN.items():
        for path in (PACKAGE / band).rglob("*.py"):
            bad += _violations(path, forbidden)
    for name in DOMAIN_FILES:
        bad += _violations(PACKAGE / name, FORBIDDEN["values"])
    assert not bad, "\n".join(bad)


def test_the_walker_sees_real_imports() -> None:
    # guard against a walker that finds nothing and so passes vacuously
    assert "numpy" in _imports(PACKAGE / "values" / "irt.py")
    assert "sqlalchemy" in _imports(PACKAGE / "store" / "database.py")


def test_no_module_is_longer_than_600_lines() -> None:
    long = [
        f"{p.relative_to(PACKAGE)}: {n}"
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 600
    ]
    assert not long, long


ML = {"torch", "transformers", "trl", "peft", "accelerate", "safetensors"}
ML_MODULES = {
    "llm/local.py",
    "llm/embedded.py",
    "tune/steer.py",
    "tune/dpo.py",
    "tune/soup.py",
    "tune/fastpath.py",
    "tune/export.py",  # rewrites adapter tensors for vLLM
    "server/lora.py",  # merges adapters into a served model's weights
}


def _top_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_ml_libraries_are_imported_only_by_inference_and_training_modules() -> None:
    bad = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in ML_MODULES:
            continue
        # the CLI may import them lazily inside commands; nothing else may import them at all
        names = _top_level_imports(path) if rel.startswith("cli/") else _imports(path)
        bad += [f"{rel} imports {n}" for n in names if n.split(".")[0] in ML]
    assert not bad, "\n".join(bad)
