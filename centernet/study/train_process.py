"""One training run as its own process, for the studies that train several (`comparison`,
`time_to_accuracy`): a fresh Keras policy and seed each, and a real exit status."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Sequence, Tuple


def train_in_process(name: str, arguments: Sequence[str]) -> Tuple[int, float]:
    """Print `== NAME: centernet train ARGUMENTS`, run that command with this interpreter
    (`python -m centernet train`, so a source checkout and an installed wheel both have it)
    and return its exit status and wall-clock seconds. Its output goes to this process's."""
    print(f"== {name}: centernet train {' '.join(arguments)}", flush=True)
    start = time.perf_counter()
    finished = subprocess.run([sys.executable, "-m", "centernet", "train", *arguments],
                              check=False)
    return finished.returncode, time.perf_counter() - start
