"""The loop's settings: optimizer, learning-rate schedule, precision, distribution and the run
itself (`train.*`).

`precision.policy=auto` and `train.jit_compile=auto` are resolved where the machine is known,
`centernet.engine.hardware` (`precision_policy`, `uses_xla`), not here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from centernet.config.checks import at_least, choice, fail, in_range, parse_duration
from centernet.errors import ConfigError


OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "step", "cosine")
PRECISION_POLICIES = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
JIT_CHOICES = ("auto", "true", "false")
HEAD_DTYPES = ("float32", "compute")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
NONFINITE_ACTIONS = ("stop", "skip")


@dataclass
class OptimizerConfig:
    """The optimizer (fused Adam and AdamW updates, `centernet/engine/optim.py`, or SGD)."""

    # adam, adamw or sgd
    name: str = "adam"
    # weight decay, Keras' decoupled form (0: none)
    weight_decay: float = 0.0
    # sgd's momentum
    momentum: float = 0.9
    # sgd: Nesterov momentum
    nesterov: bool = False
    # clip the gradients' global norm to this; null: no clipping
    global_clipnorm: Optional[float] = None

    def __post_init__(self) -> None:
        choice("optimizer.name", self.name, OPTIMIZERS)
        at_least("optimizer.weight_decay", self.weight_decay, 0.0)
        in_range("optimizer.momentum", self.momentum, 0.0, 1.0)
        if self.global_clipnorm is not None and self.global_clipnorm <= 0:
            fail("optimizer.global_clipnorm", self.global_clipnorm, "must be > 0 or null")


@dataclass
class ScheduleConfig:
    """Learning-rate schedule over `train.max_steps`, after `warmup_steps` of linear warm-up.

    step: multiply by `gamma` at each fraction of the run in `milestones`;
    cosine: cosine decay from the peak to `min_lr_ratio` x peak; constant: the peak throughout.
    """

    # cosine, step or constant after the warm-up
    name: str = "cosine"
    # steps of linear warm-up to the peak rate
    warmup_steps: int = 0
    # step: fractions of the run where the rate is multiplied by gamma
    milestones: List[float] = field(default_factory=lambda: [0.64, 0.86])
    # step: the factor at each milestone
    gamma: float = 0.1
    # cosine: the last rate as a share of the peak
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        choice("schedule.name", self.name, SCHEDULES)
        at_least("schedule.warmup_steps", self.warmup_steps, 0)
        if any(not 0.0 < m < 1.0 for m in self.milestones) or list(self.milestones) != sorted(
                self.milestones):
            fail("schedule.milestones", list(self.milestones),
                  "must be increasing fractions of the run in (0, 1), e.g. [0.64, 0.86]")
        in_range("schedule.gamma", self.gamma, 0.0, 1.0, open_low=True)
        in_range("schedule.min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)


@dataclass
class PrecisionConfig:
    """Mixed precision. `policy`: the Keras mixed-precision policy. `heads`: `float32` (default)
    runs the heads' last layers in float32, as Keras advises for a model's outputs, so every loss
    sees float32 logits; `compute` runs them in the policy's compute dtype, as a model built without
    a float32 output layer does, so `loss=naive` and `loss=clamped` compute in bfloat16 or
    float16 (`loss=stable` casts to float32 first either way)."""

    # Keras policy: float32, mixed_bfloat16, mixed_float16 or auto (the machine decides)
    policy: str = "float32"
    # float32: the heads' last layers in float32; compute: in the policy's dtype
    heads: str = "float32"

    def __post_init__(self) -> None:
        choice("precision.policy", self.policy, PRECISION_POLICIES)
        choice("precision.heads", self.heads, HEAD_DTYPES)

    @property
    def head_dtype(self) -> str | None:
        """`build_model`'s `head_dtype`: "float32", or None for the policy's compute dtype."""
        return "float32" if self.heads == "float32" else None


@dataclass
class DistributeConfig:
    """Training on several devices. `strategy` (`centernet/engine/strategies.py`): `default` (one
    device), `mirrored` (the visible GPUs, or `cpu_devices` logical CPU devices when set),
    `multi_worker` (cluster from TF_CONFIG or Slurm) or `tpu`. `train.batch_size` is the global
    batch, split evenly between the replicas. `worker_dir`: where a worker other than the chief
    writes what it must (its copy of each checkpoint save, its log); null: a temporary directory
    removed at the end."""

    # default (one device), mirrored, multi_worker or tpu
    strategy: str = "default"
    # mirrored on a CPU: that many logical CPU devices (0: the visible GPUs)
    cpu_devices: int = 0
    # where a non-chief worker writes; null: a temporary folder removed at the end
    worker_dir: Optional[str] = None

    def __post_init__(self) -> None:
        choice("distribute.strategy", self.strategy, STRATEGIES)
        at_least("distribute.cpu_devices", self.cpu_devices, 0)


@dataclass
class TrainConfig:
    """The loop. `lr` is a learning rate per 32 images: the peak rate for `lr_reference_batch` (32)
    images a step. With `scale_lr` (the default) the run's peak rate, reached after
    `schedule.warmup_steps` of linear warm-up, is `lr * batch_size / lr_reference_batch` (`peak_lr`;
    linear scaling, as the original CenterNet does from 1.25e-4 at batch 32), with `batch_size` the
    global batch under a distributed strategy; without it, `lr` itself. `jit_compile` (`true`,
    `false` or `auto`: where it measured faster, `centernet/engine/hardware.py`) compiles the train
    step with XLA. `batch_size` null: chosen from the data and the machine when the run starts.

    The run's length, first that applies: `time_budget` when it is a duration (`45m`, `2h`,
    `90s`, `1h30m`): the run measures its own step and evaluation times, then plans the number
    of steps (and `evaluations` evaluations, the last at the end) to end within it
    (`centernet/engine/budget.py`); `max_steps`; `epochs` passes over the training split;
    `time_budget=auto`: a budget that suits the machine (an hour on a CPU, 100 epochs on a
    GPU). The schedule spans that whole length. `stop_at_step` ends this invocation early
    (checkpointed, resumable, schedule unchanged), e.g. to split a long run into time-boxed
    jobs. `patience`: end the run after that many evaluations without a better validation AP
    (the best checkpoint is kept); null: never.
    `deterministic` (needs `seed`): a run stopped at any checkpoint and resumed ends with the
    same weights, bit for bit, as the run left alone. On one device the step is then compiled
    with XLA, whose CPU code measured bit-exact from run to run where TensorFlow's own CPU
    kernels did not (even under op determinism, which in turn cannot compile the max-pool
    gradient with XLA); under a distributed strategy TensorFlow's op determinism is on.
    `ema_decay` keeps an exponential moving average of the weights (`centernet/engine/ema.py`)
    that evaluation, the best checkpoint and the scripts use; null: none.
    `tensorboard_images`: at every evaluation TensorBoard gets the detections drawn on that
    many validation images (the split's first) and each class's PR curve; 0: no pictures."""

    def total_steps(self, num_train_examples: int) -> int:
        """The run's length in steps when it is fixed by `max_steps` or `epochs` (a time
        budget's length is planned by `centernet/engine/budget.py`)."""
        if self.max_steps is not None:
            return self.max_steps
        if self.epochs is None:
            raise ConfigError("the run has no length: set train.max_steps, train.epochs or "
                              "train.time_budget")
        return self.epochs * max(num_train_examples // self.batch_size, 1)

    @property
    def budget_seconds(self) -> Optional[float]:
        """The time budget in seconds when it decides the run's length, else None (`auto`
        is resolved to a duration or to epochs before training, `engine/data_choices.py`)."""
        if self.time_budget in (None, "auto"):
            return None
        return parse_duration(self.time_budget)

    # images per step (the global batch); null: chosen from the data and the machine
    batch_size: Optional[int] = 32
    # the run's length in steps (before epochs and time_budget)
    max_steps: Optional[int] = None
    # the run's length in passes over the training split
    epochs: Optional[int] = None
    # a duration (45m, 2h, 1h30m) the run plans its steps to fit; auto: what suits the machine
    time_budget: Optional[str] = "auto"
    # a time budget's evaluations, the last at the end
    evaluations: int = 6
    # end the run after that many evaluations without a better AP; null: never
    patience: Optional[int] = None
    # end this invocation at that step (checkpointed, resumable, schedule unchanged)
    stop_at_step: Optional[int] = None
    # a rate per 32 images (lr_reference_batch): the peak learning rate is lr * batch_size / 32
    # with scale_lr (the default), reached after schedule.warmup_steps
    lr: float = 1.25e-4
    # the batch train.lr is given for (linear scaling)
    lr_reference_batch: int = 32
    # scale train.lr linearly with the batch; false: train.lr is the peak rate as it stands
    scale_lr: bool = True
    # the seed of weights, shuffling and augmentation; null: unseeded
    seed: Optional[int] = 0
    # resumed runs end bit for bit as uninterrupted ones (needs seed; XLA on one device)
    deterministic: bool = False
    # steps between training records (train.log, TensorBoard)
    log_every: int = 50
    # steps between checkpoints
    checkpoint_every: int = 1000
    # the newest checkpoints kept (the best one apart)
    keep_checkpoints: int = 3
    # steps between evaluations (0: at the end only)
    eval_every: int = 2000
    # a non-finite step: stop (with the cause) or skip it
    on_nonfinite: str = "stop"
    # keep an exponential moving average of the weights with this decay; null: none
    ema_decay: Optional[float] = None
    # compile the step with XLA: true, false or auto (where it measured faster)
    jit_compile: str = "auto"
    # show a progress bar (the log lines are written either way)
    progress_bar: bool = True
    # validation images drawn with detections in TensorBoard at each evaluation
    tensorboard_images: int = 4

    def __post_init__(self) -> None:
        at_least("train.tensorboard_images", self.tensorboard_images, 0)
        if self.batch_size is not None:
            at_least("train.batch_size", self.batch_size, 1)
        if self.max_steps is not None:
            at_least("train.max_steps", self.max_steps, 1)
        if self.time_budget not in (None, "auto"):
            try:
                seconds = parse_duration(self.time_budget)
            except ValueError as error:
                fail("train.time_budget", self.time_budget, str(error))
            if seconds < 10:
                fail("train.time_budget", self.time_budget, "must be at least 10s")
        at_least("train.evaluations", self.evaluations, 1)
        if self.patience is not None:
            at_least("train.patience", self.patience, 1)
        if self.epochs is not None:
            at_least("train.epochs", self.epochs, 1)
        if self.stop_at_step is not None:
            at_least("train.stop_at_step", self.stop_at_step, 1)
        if not self.lr > 0:
            fail("train.lr", self.lr, "must be > 0")
        at_least("train.lr_reference_batch", self.lr_reference_batch, 1)
        at_least("train.log_every", self.log_every, 1)
        at_least("train.checkpoint_every", self.checkpoint_every, 1)
        at_least("train.keep_checkpoints", self.keep_checkpoints, 1)
        at_least("train.eval_every", self.eval_every, 0)
        choice("train.on_nonfinite", self.on_nonfinite, NONFINITE_ACTIONS)
        if self.deterministic and self.seed is None:
            fail("train.deterministic", self.deterministic, "needs train.seed (an integer)")
        if self.deterministic and self.jit_compile == "false":
            fail("train.jit_compile", self.jit_compile, "train.deterministic=true compiles the "
                  "step with XLA (the deterministic path on one device): use auto or true")
        self.jit_compile = str(self.jit_compile).lower()
        choice("train.jit_compile", self.jit_compile, JIT_CHOICES)
        if self.ema_decay is not None:
            in_range("train.ema_decay", self.ema_decay, 0.0, 1.0, open_low=True)
            if self.ema_decay >= 1.0:
                fail("train.ema_decay", self.ema_decay, "must be < 1 (or null: no average)")

    @property
    def peak_lr(self) -> float:
        """The learning rate after warm-up, after linear batch scaling."""
        scale = self.batch_size / self.lr_reference_batch if self.scale_lr else 1.0
        return self.lr * scale
