"""The `tf.distribute` strategy of a run (`distribute=default|mirrored|multi_worker|tpu`),
with what a run sets up around it first (`configure_runtime`: determinism, seeds) and the
record of what it runs on (`runtime_record`).

- `default`: TensorFlow's default strategy, one device.
- `mirrored`: `tf.distribute.MirroredStrategy` over the visible GPUs, or over
  `distribute.cpu_devices` logical CPU devices (a correctness path on a CPU machine: the
  replicas share the same cores, so it is no faster than `default`).
- `multi_worker`: `tf.distribute.MultiWorkerMirroredStrategy`; the cluster comes from
  `TF_CONFIG`, or from Slurm's variables (`SLURM_PROCID`, ...) where they are set and
  `TF_CONFIG` is not. Worker 0 (the chief) writes the run directory; `is_chief` says which.
- `tpu`: `tf.distribute.TPUStrategy` from `TPUClusterResolver` (by name; untested here).

Logical CPU devices can only be made before TensorFlow initialises its devices, so
`build_strategy` is the first thing a run does with TensorFlow.
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from centernet.config import DistributeConfig, RunConfig
from centernet.errors import ConfigError


# TensorFlow's default strategy (a singleton; no scope is active while modules import).
DEFAULT_STRATEGY = tf.distribute.get_strategy()


def is_distributed(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` is anything but TensorFlow's default (one device, no collectives)."""
    return strategy is not DEFAULT_STRATEGY


def _logical_cpus(count: int) -> list:
    """`count` logical CPU devices, made now unless TensorFlow already has at least that many.

    Raises:
        ConfigError: TensorFlow's devices were initialised with fewer.
    """
    physical = tf.config.list_physical_devices("CPU")[0]
    configured = tf.config.get_logical_device_configuration(physical)
    if configured is None or len(configured) < count:
        try:
            tf.config.set_logical_device_configuration(
                physical, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
        except RuntimeError as error:
            raise ConfigError(
                f"distribute.cpu_devices={count}: TensorFlow's devices were already initialised "
                f"with {len(configured or [None])} CPU device(s); set it before anything runs "
                f"on TensorFlow (a fresh process)") from error
    return [device.name for device in tf.config.list_logical_devices("CPU")[:count]]


def _cluster_resolver() -> tf.distribute.cluster_resolver.ClusterResolver:
    """`TF_CONFIG`'s cluster, else Slurm's where its variables are set."""
    if "TF_CONFIG" not in os.environ and "SLURM_PROCID" in os.environ:
        return tf.distribute.cluster_resolver.SlurmClusterResolver()
    if "TF_CONFIG" not in os.environ:
        raise ConfigError("distribute.strategy=multi_worker: set TF_CONFIG (the cluster and this "
                          "worker's task; README 'Training on several devices and machines') "
                          "or run under Slurm")
    try:
        config = json.loads(os.environ["TF_CONFIG"])
        config["cluster"]["worker"], config["task"]["index"]
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"TF_CONFIG={os.environ['TF_CONFIG']!r} is not a cluster spec with "
                          f"cluster.worker and task.index ({error!r})") from error
    return tf.distribute.cluster_resolver.TFConfigClusterResolver()


def build_strategy(cfg: DistributeConfig) -> tf.distribute.Strategy:
    """The strategy `cfg.strategy` names (module docstring)."""
    if cfg.strategy == "default":
        return DEFAULT_STRATEGY
    if cfg.strategy == "mirrored":
        gpus = tf.config.list_physical_devices("GPU")
        if cfg.cpu_devices or not gpus:
            # Replicas in one process reduce through the first device: no collective ops,
            # whose instance keys collide when one process builds several strategies.
            return tf.distribute.MirroredStrategy(
                _logical_cpus(cfg.cpu_devices or 1),
                cross_device_ops=tf.distribute.ReductionToOneDevice())
        return tf.distribute.MirroredStrategy()
    if cfg.strategy == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=_cluster_resolver())
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run directory (checkpoints, logs, evaluation): the
    strategy's own answer, false only on the non-chief workers of a cluster."""
    return bool(strategy.extended.should_checkpoint)


def per_replica_batch(global_batch: int, strategy: tf.distribute.Strategy) -> int:
    """`global_batch / replicas`.

    Raises:
        ConfigError: `train.batch_size` does not divide between the replicas.
    """
    replicas = strategy.num_replicas_in_sync
    if global_batch % replicas:
        raise ConfigError(f"train.batch_size={global_batch} does not divide between the "
                          f"{replicas} replicas of distribute.strategy="
                          f"{type(strategy).__name__}; use a multiple of {replicas}")
    return global_batch // replicas


def configure_runtime(cfg: RunConfig) -> tf.distribute.Strategy:
    """The distribution strategy (first: logical CPU devices must precede any TensorFlow
    work), determinism and seeds, before any model (the precision policy is set once the run's
    recorded or new choices resolve `precision=auto`).

    `train.deterministic`: on one device the step compiles with XLA (`hardware.uses_xla`),
    which measured bit-exact; a distributed step cannot, and turns on op determinism."""
    strategy = build_strategy(cfg.distribute)
    if cfg.train.deterministic and is_distributed(strategy):
        tf.config.experimental.enable_op_determinism()
    seed_everything(cfg)
    return strategy


def runtime_record(cfg: RunConfig, strategy: tf.distribute.Strategy) -> dict:
    """What the run runs on, for `plan.json`: the strategy, its replicas and their devices,
    and the CPU allocator (`TF_CPU_ALLOCATOR_USE_BFC`, see `centernet/__init__.py`)."""
    pooled = os.environ.get("TF_CPU_ALLOCATOR_USE_BFC", "").lower() in ("1", "true")
    if is_distributed(strategy):
        devices = list(strategy.extended.worker_devices)
    else:  # the default strategy places ops on the first GPU, else the CPU
        devices = [(tf.config.list_logical_devices("GPU") or
                    tf.config.list_logical_devices("CPU"))[0].name]
    return {"strategy": cfg.distribute.strategy, "replicas": strategy.num_replicas_in_sync,
            "devices": devices,
            "cpu_allocator": "pooled (BFC)" if pooled else "TensorFlow's default"}


def runtime_line(record: dict) -> str:
    """`runtime_record` as the run prints it."""
    return (f"runtime: distribute={record['strategy']}, {record['replicas']} replica(s) on "
            f"{', '.join(record['devices'])}; CPU allocator {record['cpu_allocator']}")


def seed_everything(cfg: RunConfig) -> None:
    """Python, NumPy and TensorFlow seeds from `train.seed` (no-op without one). Called again
    right before the model is built, so its initial weights do not depend on what ran before
    (such as generating the dataset on a first run)."""
    if cfg.train.seed is not None:
        keras.utils.set_random_seed(cfg.train.seed)
