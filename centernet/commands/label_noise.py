"""Measure the label audit on known errors (`centernet/study/label_noise.py`):
`centernet label-noise shapes|inject|score ...` (or `python scripts/label_noise.py ...`).

    centernet label-noise shapes OUT [--train 800] [--val 200] [--test 300] [--seed 0]
    centernet label-noise inject ROOT OUT [--split train] [--fraction 0.05]
    centernet label-noise score RUN_DIR/audit/label_issues.json OUT/injected.json

`shapes` writes the built-in shapes scenes as a Pascal VOC folder whose labels are complete
and exact by construction: injected into and audited, it measures the audit apart from a real
dataset's own omissions.

`inject` copies the Pascal VOC folder ROOT to OUT with errors injected into its training
split (a fixed seed) and lists them in OUT/injected.json; train and audit a run on OUT (or
audit an existing run with `dataset.root=OUT`); `score` prints, per kind of error, the
precision and recall of the audit's top N findings of that kind (N = the number injected).
"""

import argparse
import json
import sys
from pathlib import Path

from centernet.cli import configure_quiet_start


def main() -> None:
    """`centernet label-noise`: inject errors into a copy, or score an audit against them."""
    configure_quiet_start(sys.argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    shapes = commands.add_parser("shapes", help="write the shapes scenes as a VOC folder")
    shapes.add_argument("out", type=Path)
    for split, count in (("train", 800), ("val", 200), ("test", 300)):
        shapes.add_argument(f"--{split}", type=int, default=count, help=f"{split} images")
    shapes.add_argument("--seed", type=int, default=0, help="the shapes dataset's seed")
    inject = commands.add_parser("inject", help="write a copy with known label errors")
    inject.add_argument("root", type=Path)
    inject.add_argument("out", type=Path)
    inject.add_argument("--split", default="train")
    inject.add_argument("--fraction", type=float, default=0.05,
                        help="share of objects removed, relabelled and shifted (each)")
    inject.add_argument("--on-background", type=int, default=10,
                        help="labels added where there is no object")
    inject.add_argument("--seed", type=int, default=0)
    score = commands.add_parser("score", help="the audit's findings against the injected")
    score.add_argument("issues", type=Path)
    score.add_argument("injected", type=Path)
    args = parser.parse_args()

    from centernet.study import label_noise

    if args.command == "shapes":
        images = {"train": args.train, "val": args.val, "test": args.test}
        label_noise.shapes_folder(args.out, images, args.seed)
        print(f"wrote {args.out}: " + ", ".join(f"{count} {split}" for split, count
                                                 in images.items()) + " images, labels complete")
        return
    if args.command == "inject":
        records = label_noise.inject(args.root, args.out, args.split, args.fraction,
                                     args.on_background, args.seed)
        counts = {kind: sum(r["kind"] == kind for r in records)
                  for kind in label_noise.KINDS}
        print(f"wrote {args.out} with {counts} injected into split {args.split!r}; "
              f"the list: {args.out / label_noise.TRUTH_FILE}")
        return
    result = label_noise.score(json.loads(args.issues.read_text()),
                               json.loads(args.injected.read_text()))
    print("| kind | injected | precision (top N) | recall (top N) |\n|---|---|---|---|")
    for kind, row in result.items():
        print(f"| {kind} | {row['injected']} | {row['precision']:.2f} | {row['recall']:.2f} |")

