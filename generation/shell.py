"""Commands printed for a person to type, spelled so that they work as printed.

A hint such as "run `python -m generation.download`" fails when Atelier is installed in a virtual
environment that is not activated: the `python` on the PATH lacks Atelier's packages. The hints
therefore name the interpreter that is running now, as the person can type it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def python_command(arguments: str) -> str:
    """`python ARGUMENTS` with this interpreter: `python` when it is the one on the PATH, else its
    path (relative to the working directory when below it, such as `.venv/bin/python`)."""
    executable = Path(sys.executable)
    for name in ("python", "python3"):
        found = shutil.which(name)
        if found and Path(found).absolute() == executable.absolute():
            return f"{name} {arguments}"
    try:
        shown = str(executable.absolute().relative_to(Path.cwd()))
    except ValueError:
        return f"{executable} {arguments}"
    return f"{shown if os.sep in shown else f'.{os.sep}{shown}'} {arguments}"
