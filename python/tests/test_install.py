"""What installing the package asks of an environment: no torch. A job's
torch is the user's own; the run handle needs only the standard library,
and `pip install` must never upgrade or replace the torch already there."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata


def test_the_package_requires_no_torch():
    requires = metadata.requires("trainui") or []
    hard = [r for r in requires if "extra ==" not in r]
    names = [
        r.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip()
        for r in hard
    ]
    assert "torch" not in [n.lower() for n in names], f"unconditional requirements: {hard}"


def test_a_run_writes_its_directory_where_torch_cannot_be_imported(tmp_path):
    script = """
import sys
sys.modules["torch"] = None  # `import torch` now fails, as where it is not installed
import trainui
run = trainui.Run(sys.argv[1], max_steps=2, handle_signals=False, print_lines=False,
                  settings={"train": {"log_steps": 1}})
run.start()
for step in (1, 2):
    run.log_step(step, 1.0 / step, 1e-3, tokens=8, grad_norm=0.5)
    run.boundary(step)
run.finish()
"""
    done = subprocess.run(
        [sys.executable, "-P", "-c", script, str(tmp_path / "run")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    status = json.loads((tmp_path / "run" / "status" / "training_status.json").read_text())
    assert status["state"] == "finished" and status["current_step"] == 2, status
    assert status["grad_norm"] == 0.5, status
