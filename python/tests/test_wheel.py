"""The wheel as a user gets it: one file holding the package and the
`trainui` program, installed without Rust and without touching the
environment's torch.

`./dev test` builds the wheel (`pip wheel ./python`), installs it into a
fresh environment and runs the whole suite there with TRAINUI_WHEEL naming
the wheel and no Rust toolchain on PATH; run elsewhere, the tests that need
the wheel say so and skip.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import trainui
from runhelpers import trainui_program
from trainui import protocol

#: The most the wheel may weigh.
MAX_WHEEL_BYTES = 15 * 1024 * 1024


def the_wheel() -> Path:
    named = os.environ.get("TRAINUI_WHEEL")
    if not named:
        pytest.skip("TRAINUI_WHEEL names no wheel: ./dev test builds one and sets it")
    wheel = Path(named)
    assert wheel.is_file(), f"TRAINUI_WHEEL={named} is no file"
    return wheel


def test_the_wheel_holds_the_package_and_the_program_and_weighs_little():
    wheel = the_wheel()
    assert wheel.name.startswith(f"trainui-{trainui.__version__}-py3-none-"), wheel.name
    size = wheel.stat().st_size
    assert size <= MAX_WHEEL_BYTES, f"{wheel.name} weighs {size / 2**20:.1f} MiB"
    names = zipfile.ZipFile(wheel).namelist()
    assert f"trainui-{trainui.__version__}.data/scripts/trainui" in names, names
    package = sorted(n for n in names if n.startswith("trainui/"))
    source = Path(__file__).resolve().parents[1] / "trainui"
    shipped = sorted(
        f"trainui/{p.name}"
        for p in source.iterdir()
        if p.suffix in (".py", ".json") or p.name == "py.typed"
    )
    assert package == shipped, "the wheel's package is the source tree's, file for file"


def test_the_suite_runs_the_installed_wheel_with_no_rust_on_path():
    the_wheel()
    for tool in ("cargo", "rustc"):
        assert shutil.which(tool) is None, f"{tool} is on PATH: {shutil.which(tool)}"
    environment = Path(sys.prefix).resolve()
    assert Path(trainui.__file__).resolve().is_relative_to(environment), trainui.__file__
    program = Path(shutil.which("trainui") or "").resolve()
    assert program == (Path(sys.executable).parent / "trainui").resolve(), program
    assert trainui_program().resolve() == program


def test_the_program_and_the_package_say_one_version():
    program = trainui_program()
    if not program.is_file():
        pytest.skip(f"{program} is not built (cargo build --release -p trainui)")
    said = subprocess.run(
        [str(program), "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert said == (
        f"trainui {trainui.__version__} (protocol {protocol.SCHEMA_VERSION}, "
        f"commands {protocol.REQUEST_VERSION})\n"
    )


def torch_snapshot(site: Path) -> dict[str, str]:
    """What identifies the installed torch: each file of its dist-info and
    its version.py, by content."""
    [info] = site.glob("torch-*.dist-info")
    files = [*sorted(info.iterdir()), site / "torch" / "version.py", site / "torch" / "__init__.py"]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


@pytest.mark.slow
def test_installing_the_wheel_with_its_extras_leaves_the_environments_torch_alone(tmp_path):
    wheel = the_wheel()
    import torch

    site = Path(torch.__file__).resolve().parents[1]
    before = torch_snapshot(site)
    # A fresh environment that has this torch (and the integrations'
    # packages), as a user's environment has its own.
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    env_site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (env_site / "user-packages.pth").write_text(f"{site}\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index"]
    pip += ["--disable-pip-version-check"]
    # The wheel itself (this torch's environment may hold the same version
    # already), then its extras as the README says. --no-index: a
    # resolution that wanted another torch, or anything not already there,
    # fails here.
    for args in (
        ["--no-deps", "--force-reinstall", str(wheel)],
        ["--find-links", str(wheel.parent), "trainui[hf,lightning,accelerate]"],
    ):
        done = subprocess.run(pip + args, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not list(env_site.glob("torch*")), sorted(p.name for p in env_site.iterdir())
    assert torch_snapshot(site) == before
    seen = subprocess.run(
        [
            str(python),
            "-P",
            "-c",
            "import torch, trainui; print(torch.__version__, trainui.__file__)",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    assert seen[0] == torch.__version__
    assert Path(seen[1]).resolve().is_relative_to(env_site.resolve()), seen
    said = subprocess.run(
        [str(env / "bin" / "trainui"), "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert said.startswith(f"trainui {trainui.__version__} "), said
