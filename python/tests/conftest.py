"""The tests exercise the installed package (`pip install ./python`), not the
source tree beside them: what a job imports is what is tested."""

from __future__ import annotations

from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "trainui"
HOW = (
    "pip install ./python first (from the repository root), then run the tests with "
    "`python -P -m pytest` so that the current directory does not come first on sys.path"
)


def pytest_configure(config: pytest.Config) -> None:
    try:
        import trainui
    except ImportError as err:
        raise pytest.UsageError(f"trainui cannot be imported ({err}): {HOW}") from err
    installed = Path(trainui.__file__).resolve().parent
    if installed == SOURCE:
        raise pytest.UsageError(
            f"the tests imported trainui from the source tree ({SOURCE}), not the installed "
            f"package: {HOW}"
        )
    stale = [
        path.name
        for path in sorted(SOURCE.iterdir())
        if path.is_file()
        and (path.suffix in (".py", ".json") or path.name == "py.typed")
        and not _same(path, installed / path.name)
    ]
    if stale:
        raise pytest.UsageError(
            f"the installed trainui ({installed}) differs from the source tree in "
            f"{', '.join(stale)}: {HOW}"
        )


def _same(source: Path, installed: Path) -> bool:
    try:
        return source.read_bytes() == installed.read_bytes()
    except FileNotFoundError:
        return False


@pytest.fixture
def children():
    """The processes a test starts (runhelpers.Children), killed when it ends,
    whatever it did."""
    from runhelpers import Children

    started = Children()
    yield started
    started.kill_all()
