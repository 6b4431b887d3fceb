"""Stopping cleanly when the scheduler says so.

Kubernetes, Slurm and cloud schedulers send SIGTERM some seconds (the grace period) before they
kill a job. During training, SIGTERM makes the loop finish the step it is in, write a checkpoint
at that step, say so, and exit with status 143 (128 + SIGTERM, what a shell reports for a process
ended by SIGTERM); rerunning the same command resumes from that checkpoint.

One process (`default`, `mirrored`): a Python signal handler only sets a flag; the loop looks at
it after every step. Several workers (`multi_worker`): TensorFlow's own
`tf.distribute.experimental.PreemptionCheckpointHandler` watches every worker for the signal and
has them all save at the same step before exiting.
"""

from __future__ import annotations

import signal
import threading
from typing import Callable, Optional

import tensorflow as tf

PREEMPTED_EXIT_CODE = 128 + signal.SIGTERM  # 143


class Preempted(SystemExit):
    """Raised by the loop after the preemption checkpoint is written: exits with 143."""

    def __init__(self) -> None:
        super().__init__(PREEMPTED_EXIT_CODE)


class PreemptionWatch:
    """Notices SIGTERM while training and, when it came, saves and exits.

    Args:
        strategy: the run's strategy; a multi-worker one uses TensorFlow's handler.
        directory: where this process writes checkpoints (the multi-worker handler wants a
            manager there; it never saves through it, `save` does).
        save: writes the checkpoint at the current step; returns a description (its path).
        announce: prints one line for the user.
    """

    def __init__(self, strategy: tf.distribute.Strategy, directory: str,
                 save: Callable[[], str], announce: Callable[[str], None]):
        self.save = save
        self.announce = announce
        self.signalled = False
        self.handler: Optional[tf.distribute.experimental.PreemptionCheckpointHandler] = None
        self.previous = None
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            config = tf.distribute.experimental.TerminationConfig(
                save_fn=self._save_for_handler, exit_fn=self._exit)
            # The handler adds its own counter to the checkpoint it is given and restores it;
            # an empty one of its own keeps the run's checkpoints exactly as the run writes
            # them (the run has restored itself already).
            manager = tf.train.CheckpointManager(tf.train.Checkpoint(), directory, max_to_keep=1)
            self.handler = tf.distribute.experimental.PreemptionCheckpointHandler(
                strategy.cluster_resolver, manager, termination_config=config)
        elif threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self.signalled = True

    def _save_for_handler(self) -> None:
        self.announce(f"preempted (SIGTERM): saved {self.save()}; rerun the same command to "
                      f"resume from it")

    @staticmethod
    def _exit() -> None:
        raise Preempted()

    def check(self) -> None:
        """After each step: when SIGTERM came, save at this step, say so, and raise
        `Preempted` (exit status 143)."""
        if self.handler is not None:
            self.handler.save_checkpoint_if_preempted()
            return
        if self.signalled:
            self._save_for_handler()
            raise Preempted()

    def close(self) -> None:
        """Put back the SIGTERM handler that was there before."""
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
            self.previous = None
