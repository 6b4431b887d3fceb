"""Print performance figures: `centernet benchmark WHAT [options]` (or `python
scripts/benchmark.py ...`).

  pipeline      training input pipeline images/s (no model)       [hydra-style overrides]
  targets       each recipe's targets (--recipes) in ms per image at --objects N, the
                TensorFlow ops and the native kernel side by side, and the peak memory of
                one 512 px batch of 16 with 100 objects each (128x128 output, 80 classes)
  train-step    model train-step images/s (--model, --input-size, --batch-size, --classes,
                --precision, --jit)
  decode        decode ms for a batch (--batch-size, --output-size, --classes, --k)
  focal         focal-loss forward+backward ms per form, 16 x 128 x 128 x 80 (--jit)
  evaluate      validation-split evaluation seconds                 [hydra-style overrides]
  coco-index    seconds to index a synthetic COCO file of --images images (default 100000)
  start         to the first training step, by part (imports, index, model and step,
                first step), each start a `centernet train` process: a folder of --small
                (300) JPEGs first and cached, then one of --images (100000) first, cached,
                and after one file is touched (folders of --size 320x240 made in --dir,
                kept there; each folder its own new index cache)  [overrides]
  resume        the files a resumed run's stream opens before its first batch at step
                --resume-at (1000), on the --images folder (the kernel counts them)
  feed          the full training pipeline's 512 px images/s on one core and on all (a
                process pinned to them), on --images (512) generated 640x480 JPEGs, and
                the input cores one GPU needs at published training speeds
  profile       where a train step's time goes: TensorFlow's profiler over a few steps,
                op time by kind (convolutions, BatchNorm, casts, optimizer, loss, ...), a
                Markdown table (the train-step options; --out FILE.json)
  suite         every figure above in one process, as a table and as JSON (--out FILE.json;
                the train-step options; overrides for the pipeline and evaluation data;
                --quick: a few repeats each, to check that everything runs)
  time-to-accuracy
                train each of --recipes (default: centernet ttfnet) with the same overrides,
                one `centernet train` process each, and write a table and
                time_to_accuracy.png of AP50 and AP against seconds and images seen into
                --out (a new directory, default outputs/time_to_accuracy: it refuses one
                that already holds its runs rather than resume them). --runs NAME=DIR ...
                reports existing run directories instead of training.
  export        for a trained run (run_dir=DIR [checkpoint=PATH] [key=value ...]): each
                format and precision's file size, single-image latency (median of --repeats
                after warm-up, 2 threads) and AP / AP50 on its validation split through that
                file; a table, and JSON with --out FILE.json

Hydra-style overrides compose `configs/train.yaml`, e.g.
`centernet benchmark pipeline model.input_size=512 train.batch_size=8`; `verbose=true` shows
TensorFlow's start-up lines (`centernet.cli`).
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from centernet.cli import command_line, compose_config, configure_quiet_start, run_command


def composed(overrides):
    from centernet.config import validate

    return validate(compose_config("train", overrides))


SUITE_ROWS = [  # (key, what, unit); a figure the machine cannot give (bfloat16 without
    # native units) is null in the JSON and "n/a" in the table
    ("matmul_fp32_gflops", "tf.matmul 2048x2048, float32 (the float32 peak)", "GFLOP/s"),
    ("matmul_bf16_gflops", "tf.matmul 2048x2048, bfloat16 (the bfloat16 peak)", "GFLOP/s"),
    ("train_img_per_s", "train step", "images/s"),
    ("train_gflops_per_s", "train step, counted FLOPs (forward x 3)", "GFLOP/s"),
    ("train_share_of_peak", "train step's share of its precision's matmul peak", "ratio"),
    ("train_bf16_img_per_s", "train step, mixed_bfloat16", "images/s"),
    ("train_bf16_share_of_peak", "train step, mixed_bfloat16, share of bf16 peak", "ratio"),
    ("pipeline_img_per_s", "input pipeline (augment, targets, batch)", "images/s"),
    ("pipeline_512_img_per_s_per_core", "input pipeline, 512 px COCO-like JPEGs, one core",
     "images/s"),
    ("targets_ms_10", "targets, 128x128x80, 10 objects", "ms/image"),
    ("targets_ms_100", "targets, 128x128x80, 100 objects", "ms/image"),
    ("ttf_targets_ms_10", "TTFNet targets (default recipe), 128x128x80, 10 objects",
     "ms/image"),
    ("ttf_targets_ms_100", "TTFNet targets (default recipe), 128x128x80, 100 objects",
     "ms/image"),
    ("decode_ms_b8", "decode, batch 8, 128x128x80, K=100", "ms/batch"),
    ("focal_stable_ms", "focal loss stable, fwd+bwd, 16x128x128x80", "ms"),
    ("focal_naive_ms", "focal loss naive, fwd+bwd, 16x128x128x80", "ms"),
    ("eval_s", "evaluation of the validation split", "s"),
    ("peak_rss_mb", "peak resident memory", "MiB"),
]


def run_suite(args) -> None:
    """`suite`: every figure, printed as a table and written to `--out`."""
    from centernet import benchmark
    from centernet.benchmark import scale

    cfg = composed(list(args.overrides) + [f"model.input_size={args.input_size}",
                                           f"train.batch_size={args.batch_size}"])
    with tempfile.TemporaryDirectory(prefix="centernet-feed-") as directory:
        root = scale.jpeg_folder(directory, 64 if args.quick else 512, val_images=8)
        figures = benchmark.suite(cfg, composed(scale.folder_overrides(root, 512, 16)),
                                  args.model, args.input_size, args.batch_size, args.classes,
                                  args.precision, args.jit,
                                  progress=lambda stage: print(f"... {stage}", file=sys.stderr),
                                  quick=args.quick)
    config = figures["config"]
    print(f"{machine_line(figures['machine'])}; {config['model']} {config['input_size']} px, batch "
          f"{config['batch_size']}, {config['classes']} classes, {config['precision']}"
          f"{', XLA' if config['jit_compile'] else ''}")
    width = max(len(what) for _, what, _ in SUITE_ROWS)
    for key, what, unit in SUITE_ROWS:
        figure = "n/a" if figures[key] is None else f"{figures[key]:.4g}"
        print(f"{what:<{width}}  {figure:>10}  {unit}")
    if args.out:
        write_json(args.out, figures)


def run_start(args) -> None:
    """`start`: `scale.starts`, as a Markdown table."""
    from centernet.benchmark import scale

    images, size = args.images or 100_000, tuple(int(v) for v in args.size.split("x"))
    directory = args.dir or Path(tempfile.mkdtemp(prefix="centernet-start-"))
    print(f"{machine_line()}; COCO folders of {args.small:,} and {images:,} JPEG files of "
          f"{size[0]}x{size[1]} in {directory}", flush=True)
    starts = scale.starts(images, directory, args.small, size, args.overrides)
    print("\n| folder, start | imports s | index s | model and step s | first step s | "
          "to the first step s | images | checked |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, start in starts.items():
        parts = [start[key] for key in ("imports_s", "index_s", "build_s", "first_step_s")]
        print(f"| {name} | " + " | ".join(f"{part:.2f}" for part in parts) +
              f" | {sum(parts):.2f} | {start['images_indexed']:,} | {start['images_checked']:,} |")
    for name, start in starts.items():
        print(f"{name}: {start['index_line']}")
    if args.out:
        write_json(args.out, {"machine": machine_line(), "starts": starts})


def run_resume(args) -> None:
    """`resume`: what a resumed run's stream opens before its first batch."""
    from centernet.benchmark import scale

    images = args.images or 100_000
    directory = args.dir or Path(tempfile.mkdtemp(prefix="centernet-resume-"))
    root = scale.jpeg_folder(directory / f"coco_{images}_320x240", images, (320, 240),
                             val_images=16)
    cfg = composed(scale.folder_overrides(root, 256, 8) + list(args.overrides))
    print(json.dumps({"benchmark": "resume", "images": images,
                      **scale.resume_reads(cfg, args.resume_at)}))


def run_feed(args) -> None:
    """`feed`: the input pipeline's 512 px images per second on one core and on all, and the
    input cores one GPU needs (published training speeds)."""
    from centernet.benchmark import forward_gflops
    from centernet.config import ModelConfig
    from centernet.benchmark import scale

    directory = args.dir or Path(tempfile.mkdtemp(prefix="centernet-feed-"))
    root = scale.jpeg_folder(directory / "coco_512_640x480", args.images or 512, val_images=8)
    print(f"{machine_line()}; full training pipeline at 512 px, batch 16, on {root}", flush=True)
    cfg = composed(scale.folder_overrides(root, 512, 16) + list(args.overrides))
    figures = [scale.pipeline_per_core(cfg, cores, args.batches)
               for cores in sorted({1, len(os.sched_getaffinity(0))})]
    for figure in figures:
        print(json.dumps({"benchmark": "feed", **figure}))
    per_core = figures[0]["images_per_sec_per_core"]
    train_gflop = 3 * forward_gflops(ModelConfig(name="resnet18", input_size=512), 80)
    print(f"\n| GPU | ResNet-18 CenterNet training at 512 px | images/s per GPU | input cores "
          f"at {per_core:.1f} images/s per core |")
    print("|---|---|---:|---:|")
    for row in scale.cores_needed(per_core, train_gflop):
        print(f"| {row['gpu']} | {row['source']} | {row['images_per_sec']:.0f} | "
              f"{row['cores']} |")


def write_json(path: Path, figures: dict) -> None:
    """Write `figures` to `path` (its folder made), and say so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {path}")


def run_targets(args) -> None:
    """`targets`: per recipe and object count, ms per image with the TensorFlow ops and with
    the native kernel, one JSON line each and a Markdown table; then the peak memory of one
    512 px batch of 16 with 100 objects each, per recipe and renderer."""
    from centernet import benchmark

    rows, memory = [], []
    for kind in args.recipes:
        for objects in args.objects:
            pair = [benchmark.render_targets_cost(objects, kind=kind, native_kernel=fast)
                    for fast in (False, True)]
            for result in pair:
                print(json.dumps({"benchmark": "targets", **result}))
            rows.append((kind, objects, *pair))
        for fast in (False, True):
            memory.append(benchmark.targets_peak_mb(kind=kind, native_kernel=fast))
            print(json.dumps({"benchmark": "targets_memory", **memory[-1]}))
    print(f"\n{machine_line()}; 128x128 output, 80 classes, batch 8, one-thread tf.data map")
    print("\n| recipe | objects | TensorFlow ops (ms/image) | native kernel (ms/image) | "
          "speed-up |")
    print("|---|---:|---:|---:|---:|")
    for kind, objects, portable, fast in rows:
        ran = "" if fast["renderer"] == "native" else " (unavailable: TensorFlow ops)"
        print(f"| {kind} | {objects} | {portable['ms_per_image']:.3f} | "
              f"{fast['ms_per_image']:.3f}{ran} | "
              f"{portable['ms_per_image'] / fast['ms_per_image']:.1f}x |")
    print("\n| recipe | renderer | peak MiB, batch of 16 x 100 objects | of which outputs |")
    print("|---|---|---:|---:|")
    for figures in memory:
        peak, outputs = ("n/a" if figures[key] is None else f"{figures[key]:.1f}"
                         for key in ("peak_mb", "outputs_mb"))
        print(f"| {figures['kind']} | {figures['renderer']} | {peak} | {outputs} |")


def run_profile(args) -> None:
    """`profile`: the train step's op time by kind, as a Markdown table."""
    from centernet.config import ModelConfig
    from centernet.study.step_profile import markdown, profile_train_step

    profile = profile_train_step(ModelConfig(name=args.model, input_size=args.input_size),
                                 args.batch_size, args.classes, args.precision)
    print(f"{machine_line()}; {args.model} {args.input_size} px, batch {args.batch_size}, "
          f"{args.classes} classes")
    print(markdown(profile))
    if args.out:
        write_json(args.out, profile)


def machine_line(machine=None) -> str:
    """The CPU, its cores and speed-deciding flags, and TensorFlow, on one line (`machine`:
    a `benchmark.machine()` dict, default this one)."""
    from centernet import benchmark

    machine = machine or benchmark.machine()
    flags = ", ".join(flag for flag, present in machine["flags"].items() if present) or "none"
    return (f"{machine['cpu']}, {machine['cores']} cores ({flags}), TensorFlow "
            f"{machine['tensorflow']}")


def run_time_to_accuracy(args) -> None:
    """`time-to-accuracy`: train (or read) the recipes' runs, write the report."""
    from centernet.study import time_to_accuracy as tta

    out = args.out or Path("outputs/time_to_accuracy")
    if args.runs:
        named = [entry.split("=", 1) for entry in args.runs]
        bad = [entry for entry, parts in zip(args.runs, named) if len(parts) != 2]
        if bad:
            raise SystemExit(f"error: --runs takes NAME=DIR entries, got {bad[0]!r}")
        curves = [tta.read_curve(name, Path(directory)) for name, directory in named]
    else:
        try:
            tta.check_runs_are_new(args.recipes, out)
        except FileExistsError as error:
            raise SystemExit(f"error: {error}") from None
        curves = [tta.train_recipe(recipe, args.overrides, out) for recipe in args.recipes]
    command = command_line(sys.argv)
    for path in tta.write_report(curves, out, command, machine_line()):
        print(f"wrote {path}")
    print(tta.markdown(curves, command, machine_line()))


def run_export(args) -> None:
    """`export`: deployment figures of a trained run."""
    from centernet.config import SCRIPT_KEYS, override_keys
    from centernet.engine.runs import load_model, load_run_config, locate, run_classes
    from centernet.export.measure import export_figures, markdown

    keys = override_keys(args.overrides)
    own = {key: o.split("=", 1)[1] for key, o in zip(keys, args.overrides) if key in SCRIPT_KEYS}
    overrides = [o for key, o in zip(keys, args.overrides) if key not in SCRIPT_KEYS]
    run_dir, checkpoint = locate(own.get("run_dir"), own.get("checkpoint"))
    run = load_run_config(run_dir, compose_config("export", overrides), overrides, SCRIPT_KEYS)
    classes = run_classes(run_dir, run)
    model = load_model(run, checkpoint, len(classes.names), policy="float32")
    rows = export_figures(model, run, classes.names, classes.category_ids, str(checkpoint),
                          args.repeats,
                          progress=lambda stage: print(f"... {stage}", file=sys.stderr))
    command = command_line(sys.argv)
    print(markdown(rows, command, machine_line()))
    if args.out:
        write_json(args.out, {"command": command, "machine": machine_line(),
                              "checkpoint": str(checkpoint), "rows": rows})


def main() -> None:
    """`centernet benchmark`: parse `sys.argv` and print the figures asked for."""
    configure_quiet_start(sys.argv)
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["pipeline", "targets", "train-step", "decode",
                                         "focal", "evaluate", "coco-index", "start",
                                         "resume", "feed",
                                         "profile",
                                         "suite",
                                         "time-to-accuracy", "export"])
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")
    parser.add_argument("--objects", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--jit", action="store_true")
    parser.add_argument("--output-size", type=int, default=128)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--images", type=int,
                        help="coco-index: images in the file (100000); start, resume: JPEG "
                        "files of the large folder (100000); feed: JPEG files (512)")
    parser.add_argument("--dir", type=Path, help="start, resume, feed: where the generated "
                        "folders are made, and kept for the next call (default: a new "
                        "temporary folder)")
    parser.add_argument("--small", type=int, default=300,
                        help="start: JPEG files of the small folder")
    parser.add_argument("--size", default="320x240", help="start: the JPEGs' WIDTHxHEIGHT")
    parser.add_argument("--resume-at", type=int, default=1000, help="resume: the step")
    parser.add_argument("--batches", type=int, default=20, help="feed: batches timed")
    parser.add_argument("--out", type=Path, help="suite, profile, export: write the figures to "
                        "this JSON file; time-to-accuracy: the report's directory")
    parser.add_argument("--quick", action="store_true",
                        help="suite: a few repeats per figure (checks that all runs; not "
                        "figures to quote)")
    parser.add_argument("--repeats", type=int, default=50,
                        help="export: timed single-image detections per format")
    parser.add_argument("--recipes", nargs="+", default=["centernet", "ttfnet"],
                        help="time-to-accuracy: the recipes to train; targets: the recipes "
                        "whose targets to time")
    parser.add_argument("--runs", nargs="+", metavar="NAME=DIR",
                        help="time-to-accuracy: report these run directories, no training")
    args = parser.parse_intermixed_args()  # overrides may come before or after options
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from centernet import benchmark
    from centernet.config import ModelConfig
    from centernet.benchmark import scale

    tables = {"suite": run_suite, "profile": run_profile, "targets": run_targets,
              "time-to-accuracy": run_time_to_accuracy, "start": run_start,
              "resume": run_resume, "feed": run_feed,
              "export": lambda arguments: run_command(lambda: run_export(arguments))}
    if args.what in tables:  # the subcommands that print their own tables
        tables[args.what](args)
        return
    if args.what == "pipeline":
        results = [benchmark.pipeline_throughput(composed(args.overrides))]
    elif args.what == "train-step":
        model = ModelConfig(name=args.model, input_size=args.input_size)
        results = [benchmark.train_step_throughput(model, args.batch_size, args.classes,
                                                   args.precision, args.jit)]
    elif args.what == "decode":
        results = [benchmark.decode_cost(args.batch_size, args.output_size, args.classes,
                                         args.k)]
    elif args.what == "focal":
        results = [benchmark.focal_loss_cost(jit_compile=args.jit)]
    elif args.what == "coco-index":
        with tempfile.TemporaryDirectory() as directory:
            results = [scale.coco_index_cost(args.images or 100_000, directory)]
    else:
        results = [benchmark.evaluation_cost(composed(args.overrides))]
    for result in results:
        print(json.dumps({"benchmark": args.what, **result}))
