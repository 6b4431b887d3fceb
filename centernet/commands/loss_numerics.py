"""Where each focal-loss form breaks: `centernet loss-numerics [--out FILE.md]` (or `python
scripts/loss_numerics.py ...`).

Sweeps one pixel's logit from -1e4 to 1e4 in float32, bfloat16 and float16, computes each
form's loss and gradient with the project's code, and prints, per form, dtype and pixel kind,
the first logits (moving out from 0) at which they become non-finite or exactly 0, and their
largest relative error against float64 elsewhere (`centernet/study/numerics.py`).
"""

import argparse
import sys
from pathlib import Path

from centernet.cli import configure_quiet_start


def main() -> None:
    """`centernet loss-numerics`: print (and with `--out`, write) the table."""
    configure_quiet_start(sys.argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args()

    from centernet.losses import sigmoid_rounding_points
    from centernet.study.numerics import DTYPES, markdown_table, sweep

    lines = ["Where tf.sigmoid rounds to exactly 0 and exactly 1:", "",
             "| dtype | sigmoid = 0 at x <= | sigmoid = 1 at x >= |", "|---|---|---|"]
    for dtype in DTYPES:
        zero_below, one_from = sigmoid_rounding_points(dtype)
        lines.append(f"| {dtype} | {zero_below:.4g} | {one_from:.4g} |")
    lines += ["", "Each form at one pixel, logits from -1e4 to 1e4 (alpha 2, beta 4):", "",
              markdown_table(sweep())]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
