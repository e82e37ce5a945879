"""trainui for PyTorch: make a training loop write the run directory of
`trainui train` and obey the same commands, so that `trainui watch`,
`trainui ctl` and `trainui status` handle it like a run of the Rust trainer.

The run directory and its protocol (files, events, commands, signals, the
ranks of a multi-process job) are described in protocol/README.md of the
trainui repository, with JSON Schemas of every file in protocol/schema/;
`trainui.protocol` mirrors them. The live settings of a Python job change
only through `trainui ctl RUN_DIR set KEY=VALUE` (edits of config.json are
not followed).
"""

from __future__ import annotations

from .launcher import resume_checkpoint
from .protocol import PRODUCER_VERSION, REQUEST_VERSION, SCHEMA_VERSION
from .run import Actions, Run
from .rundir import RunDirError

#: The installed distribution's version: the Rust workspace's.
__version__ = PRODUCER_VERSION

__all__ = [
    "Actions",
    "Run",
    "RunDirError",
    "resume_checkpoint",
    "SCHEMA_VERSION",
    "REQUEST_VERSION",
    "generate",
    "evaluate_samples",
    "__version__",
]

#: Names re-exported lazily from modules that need more than torch (or that
#: may not be installed): name -> module.
_LAZY = {
    "generate": "trainui.generate",
    "evaluate_samples": "trainui.generate",
}


def __getattr__(name):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'trainui' has no attribute {name!r}")
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise AttributeError(
            f"trainui.{name} needs {module_name}, which cannot be imported: {err}"
        ) from err
    value = getattr(module, name)
    globals()[name] = value
    return value
