"""One version number: the Python package's equals the Rust workspace's."""

from __future__ import annotations

import re
import sys
from importlib.metadata import version
from pathlib import Path

import trainui
from trainui import protocol

PYTHON_DIR = Path(__file__).resolve().parents[1]
CARGO_TOML = PYTHON_DIR.parent / "Cargo.toml"
PYPROJECT = PYTHON_DIR / "pyproject.toml"


def toml_string(path: Path, table: str, key: str) -> str:
    """The string `key` of the TOML table `[table]` of `path`."""
    assert path.is_file(), f"{path} is missing"
    text = path.read_text(encoding="utf-8")
    if sys.version_info >= (3, 11):
        import tomllib

        value = tomllib.loads(text)
        for name in [*table.split("."), key]:
            assert isinstance(value, dict) and name in value, f"{path}: no {table}.{key}"
            value = value[name]
        assert isinstance(value, str), f"{path}: {table}.{key} is not a string"
        return value
    # Before tomllib: the table's lines up to the next header.
    header = re.search(rf"^\[{re.escape(table)}\][ \t]*$", text, re.MULTILINE)
    assert header is not None, f"{path}: no [{table}]"
    body = re.split(r"^\[", text[header.end() :], maxsplit=1, flags=re.MULTILINE)[0]
    found = re.search(rf'^{re.escape(key)}\s*=\s*"([^"]*)"', body, re.MULTILINE)
    assert found is not None, f"{path}: no {key} in [{table}]"
    return found.group(1)


def rust_version() -> str:
    return toml_string(CARGO_TOML, "workspace.package", "version")


def test_pyproject_takes_the_rust_workspace_version():
    # maturin reads the version of the crate it builds, the workspace's.
    text = PYPROJECT.read_text(encoding="utf-8")
    assert re.search(r'^dynamic = \["version"\]', text, re.MULTILINE), (
        "python/pyproject.toml must leave the version to maturin (dynamic), which reads "
        f"{CARGO_TOML}'s [workspace.package] version"
    )
    assert not re.search(r"^version\s*=", text, re.MULTILINE), "a second version number"
    assert toml_string(PYPROJECT, "tool.maturin", "manifest-path") == "../crates/monitor/Cargo.toml"


def test_the_installed_package_reports_the_rust_workspace_version():
    assert version("trainui") == rust_version(), (
        "the installed trainui is another version than the workspace's: pip install ./python"
    )
    assert trainui.__version__ == rust_version()


def test_runs_name_their_producer_with_the_rust_workspace_version():
    # `trainui status` shows it: "job  trainui-python 0.1.0 (pytorch)".
    assert protocol.PRODUCER_VERSION == rust_version()
