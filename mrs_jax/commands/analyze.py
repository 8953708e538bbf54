"""Tables, R-accuracy curves (PNG) and CSV from certification run directories.

Usage: ``mrs-analyze RUN_DIR... [--radii 0 1 2] [--common] [--out DIR]`` (in a
checkout also ``python -m certify.analyze``).

Every row file of each run is read (merged file and shards); a run with fewer
rows than it was asked for is marked partial. A mistake (missing run dir, bad
run.json, duplicated rows) is one line ``error: ...`` and exit status 2.
"""

import argparse
import json
import os
import sys
from collections.abc import Sequence

from mrs_jax import commands, report as analysis
from mrs_jax.commands import _cli as cli


def main(argv: Sequence[str] | None = None) -> int:
    """``mrs-analyze``: :func:`run` with user errors as one line (exit 2).

    A mistake (missing run dir, bad run.json, duplicated rows) is one line
    `error: ...` and exit status 2 (`--debug` or MRS_DEBUG=1: the traceback).

    Returns:
      Exit status: 0, or 2 for a user error.
    """
    return cli.main_guard(run, None if argv is None else list(argv))


def run(argv: Sequence[str] | None = None) -> int:
    """Summarises the runs the command line names; user errors raise (see
    :func:`main`)."""
    args = _parser().parse_args(argv)
    images = analysis.common_images(args.run_dirs) if args.common else None
    summaries = analysis.summarize_runs(args.run_dirs, images)
    table = analysis.markdown_table(summaries, args.radii)
    table += "\n" + analysis.seconds_table(summaries)
    print(table, end="")
    if args.out:
        _write(args.out, table, summaries, args.radii, log_x=args.log_x)
        print(f"wrote summary.md, summary.json, curves.csv, curves.png to {args.out}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=commands.prog("certify.analyze"),
        description="Summarise certification runs: table, curves, CSV.",
    )
    parser.add_argument("run_dirs", nargs="+", help="run directories")
    parser.add_argument(
        "--radii",
        type=float,
        nargs="+",
        default=[0.0],
        help="radii for the table's certified columns (s*sqrt(C), s^2 are added)",
    )
    parser.add_argument(
        "--common",
        action="store_true",
        help="compare every run on the test images all of them hold",
    )
    parser.add_argument("--out", help="write summary.md/.json, curves.csv/.png here")
    parser.add_argument("--log_x", action="store_true", help="symlog radius axis")
    parser.add_argument("--debug", action="store_true", help="tracebacks on errors")
    return parser


def _write(out: str, table: str, summaries, radii, *, log_x: bool) -> None:
    """Writes summary.md, summary.json, curves.csv and curves.png into ``out``."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise NotADirectoryError(f"--out {out} exists and is not a directory")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "summary.md"), "w", encoding="utf-8") as f:
        f.write(table)
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump([analysis.summary_record(s, radii) for s in summaries], f, indent=2)
    analysis.write_curves_csv(summaries, os.path.join(out, "curves.csv"))
    analysis.plot_curves(summaries, os.path.join(out, "curves.png"), log_x=log_x)


if __name__ == "__main__":
    sys.exit(main())
