"""Boundaries: services never import each other; only services.shared is common ground."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "services"
NAMES = ("ingest", "scanner", "links", "review", "rooms")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("service", NAMES)
def test_service_imports_only_itself_and_shared(service: str) -> None:
    files = list((SERVICES / service).rglob("*.py"))
    assert files
    others = {f"services.{n}" for n in NAMES if n != service}
    for path in files:
        for module in imported_modules(path):
            assert not any(module == o or module.startswith(o + ".") for o in others), (
                f"{path.relative_to(SERVICES)} imports {module}"
            )


def test_shared_imports_no_service() -> None:
    for path in (SERVICES / "shared").rglob("*.py"):
        for module in imported_modules(path):
            assert not any(module.startswith(f"services.{n}") for n in NAMES), (path, module)


@pytest.mark.parametrize("service", NAMES)
def test_importing_a_service_does_no_work(service: str) -> None:
    """App factories: importing a module opens no client and loads no model."""
    import importlib
    import sys

    before = set(sys.modules)
    module = "app" if service != "scanner" else "worker"
    importlib.import_module(f"services.{service}.{module}")
    loaded = set(sys.modules) - before
    assert not any(m.startswith("secantus") for m in loaded)


RESERVED_LOG_KEYS = set(vars(__import__("logging").makeLogRecord({}))) | {"message", "asctime"}


def _extra_keys(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        for kw in node.keywords:
            if kw.arg == "extra" and isinstance(kw.value, ast.Dict):
                found += [
                    (node.lineno, k.value)
                    for k in kw.value.keys
                    if isinstance(k, ast.Constant) and isinstance(k.value, str)
                ]
    return found


def test_log_extras_never_use_a_log_record_attribute() -> None:
    """``extra={"thread": ...}`` raises KeyError inside logging: in an except block that once
    ended a consumer thread that was meant to restart itself."""
    roots = [SERVICES, SERVICES.parent / "deploy", SERVICES.parent / "bench"]
    checked = 0
    for root in roots:
        for path in root.rglob("*.py"):
            for line, key in _extra_keys(path):
                checked += 1
                assert key not in RESERVED_LOG_KEYS, f"{path}:{line} logs extra key {key!r}"
    assert checked > 50
