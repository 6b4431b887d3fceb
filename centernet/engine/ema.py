"""An exponential moving average of the model's weights for evaluation and export
(`train.ema_decay`), on TensorFlow's `tf.train.ExponentialMovingAverage`.

After each applied update, every float weight `w` of the model (BatchNorm statistics
included, as timm's `ModelEmaV2` does) moves its average `a` by
`a <- a - (1 - d) (a - w)` with `d = min(decay, (1 + n) / (10 + n))`, `n` the number of
updates so far, so early averages follow the weights closely. Training goes on with the raw
weights; evaluation, the best checkpoint's metrics, and `evaluate.py`, `predict.py` and
`export.py` use the averages.
"""

from __future__ import annotations

import contextlib
from typing import Dict, Iterator, List, Optional

import keras
import tensorflow as tf


class WeightAverage:
    """The averages of `model`'s float weights, created equal to the weights.

    `variables` (the averages, a list) go into checkpoints beside the model, so a resumed run
    continues the same average.
    """

    def __init__(self, model: keras.Model, decay: float):
        self.weights = [v for v in model.weights if "float" in str(v.dtype)]
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="ema_updates")
        self._average = tf.train.ExponentialMovingAverage(decay, num_updates=self.updates)
        self._average.apply([_tf_variable(w) for w in self.weights])  # creates the averages
        self.variables: List[tf.Variable] = [self._average.average(_tf_variable(w))
                                             for w in self.weights]

    def update(self) -> None:
        """Move every average one step towards its weight (graph-safe: call it inside the
        compiled train step, after the update)."""
        self.updates.assign_add(1)
        self._average.apply([_tf_variable(w) for w in self.weights])

    def restart(self) -> None:
        """Averages equal to the weights again, no updates counted (a fresh start)."""
        self.updates.assign(0)
        for weight, average in zip(self.weights, self.variables):
            average.assign(weight)

    def copy_to_model(self) -> None:
        """Overwrite the model's weights with the averages (for a model loaded to evaluate or
        export, never during training)."""
        for weight, average in zip(self.weights, self.variables):
            weight.assign(average)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The averages in the model inside the block, the raw weights back after it."""
        saved = [tf.identity(_tf_variable(w)) for w in self.weights]
        self.copy_to_model()
        try:
            yield
        finally:
            for weight, value in zip(self.weights, saved):
                weight.assign(value)


def ema_objects(ema: Optional[WeightAverage]) -> Dict[str, object]:
    """What a `tf.train.Checkpoint` holds of `ema` (nothing when it is None): the averages
    and the update count."""
    return {} if ema is None else {"ema": ema.variables, "ema_updates": ema.updates}


def _tf_variable(weight) -> tf.Variable:
    """The `tf.Variable` behind a Keras 3 variable (what `tf.train` APIs take)."""
    return getattr(weight, "value", weight)
