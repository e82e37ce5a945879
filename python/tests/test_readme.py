"""The README's quick start and "Python jobs" sections are run, not just
read: each of their Python snippets is a part of a script in examples/, word
for word, and a test runs that script; each `trainui run` command of their
shell snippets runs as written and ends the job's run finished."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from runhelpers import REPO, events, status, trainui_program

SECTIONS = ["## Quick start for PyTorch users", "## Python jobs"]
#: A fenced block, with the comment that says where it comes from.
BLOCK = re.compile(r"(?:<!-- (?P<origin>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S)
#: Where the tests that run examples live.
TESTS = [REPO / "python" / "tests", REPO / "crates" / "trainer" / "tests"]


def section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    parts = []
    for heading in SECTIONS:
        start = text.index(f"\n{heading}\n")
        end = text.find("\n## ", start + 1)
        parts.append(text[start : end if end >= 0 else len(text)])
    return "\n".join(parts)


def blocks(lang: str) -> list[tuple[str | None, str]]:
    return [
        (match["origin"], match["body"])
        for match in BLOCK.finditer(section())
        if match["lang"] == lang
    ]


def part_of(snippet: str, script: str) -> bool:
    """Whether the snippet's lines are lines of the script in a row, all
    indented alike there."""
    lines = snippet.rstrip("\n").split("\n")
    for indent in range(0, 17, 4):
        shifted = "\n".join(" " * indent + line if line else "" for line in lines)
        if f"\n{shifted}\n" in f"\n{script}\n":
            return True
    return False


def text_of_the_tests() -> str:
    """The text of every test outside this file, and the README's commands
    this file runs."""
    return "\n".join(
        path.read_text(encoding="utf-8")
        for folder in TESTS
        for path in sorted(folder.rglob("*"))
        if path.suffix in (".py", ".rs") and path.name != Path(__file__).name
    ) + "\n".join(commands())


def test_every_python_snippet_is_a_part_of_an_example_a_test_runs():
    snippets = blocks("python")
    assert len(snippets) >= 5, "the quick start, the plain loop, the Trainer, Lightning, Accelerate"
    tests = text_of_the_tests()
    for origin, body in snippets:
        assert origin and origin.startswith("example: "), f"where is this from?\n{body}"
        example = origin.removeprefix("example: ")
        script = (REPO / example).read_text(encoding="utf-8")
        assert part_of(body, script), f"not word for word in {example}:\n{body}"
        assert example in tests, f"no test runs {example}"


def test_a_changed_snippet_is_caught():
    script = "def main():\n    a = 1\n    b = 2\n    return a + b\n"
    assert part_of("a = 1\nb = 2", script)
    assert not part_of("a = 1\nb = 3", script)
    assert not part_of("a = 1\n  b = 2", script)


def commands() -> list[str]:
    found = [
        line
        for origin, body in blocks("sh")
        if origin == "run by: python/tests/test_readme.py"
        for line in body.splitlines()
        if line.startswith("trainui run ")
    ]
    assert found, "the README's `trainui run` commands"
    return found


@pytest.mark.slow
@pytest.mark.parametrize("command", commands())
def test_each_trainui_run_command_runs_as_written(command, tmp_path):
    program = trainui_program()
    if not program.is_file():
        pytest.skip(f"{program} is not built (cargo build --release -p trainui)")
    # The commands name examples/ from the repository's root; runs/ goes here.
    (tmp_path / "examples").symlink_to(REPO / "examples")
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(
        [str(program.parent), str(Path(sys.executable).parent), env.get("PATH", "")]
    )
    env["GLOO_SOCKET_IFNAME"] = "lo"
    done = subprocess.run(
        shlex.split(command),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    [run] = list((tmp_path / "runs").iterdir())
    assert status(run)["state"] == "finished", status(run)
    if "--restart-on-stall" in command:
        # The relaunch resumed from a checkpoint, as the README says.
        starts = [e for e in events(run) if e["type"] == "started"]
        assert len(starts) == 2 and starts[1]["resumed_from"], starts
