"""The embedded demo: train on digits if needed, attack, localise, certify, report.

Everything runs offline on the 8x8 scikit-learn digits (upsampled to 32x32x3):
train the small CNN with noise inside random squares (skipped when a checkpoint
exists; resumed when a previous demo was killed mid-training), run the practical
mode on a few dozen test digits with a 5x5 patch (resumed row by row), then print
the results table and write the R-accuracy plot and CSV.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from mrs_jax import analysis, configfile, job

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m certify.demo", description=__doc__)
    parser.add_argument("--workdir", default="runs", help="where runs are written")
    parser.add_argument("--num_images", type=int, default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny, for tests")
    args = parser.parse_args(argv)

    from mrs_jax.checkpoint import load_classifier
    from mrs_jax.training import TrainConfig, train

    workdir = Path(args.workdir)
    model_dir = workdir / ("digits_smoke" if args.smoke else "digits")
    # A finished run returns at once; a killed one resumes from its checkpoint.
    print(f"training (or reusing) the digits model in {model_dir} ...", flush=True)
    train_config = configfile.load(
        str(REPO / "train" / "configs" / "digits.py"), args.smoke, TrainConfig
    )
    train(train_config, model_dir, resume=True)
    classify, meta = load_classifier(model_dir)

    config = configfile.load(
        str(REPO / "certify" / "configs" / "digits.py"), args.smoke, job.JobConfig
    )
    # Certify at the noise level the model was trained with.
    config = dataclasses.replace(config, sigma=float(meta["sigma"]))
    if args.num_images is not None:
        config = dataclasses.replace(config, num_images=args.num_images)
    run_dir = workdir / ("demo_smoke" if args.smoke else "demo")
    print(
        f"certifying {config.num_images} test digits (5x5 patch, sigma "
        f"{config.sigma}, n = {config.n:,}) into {run_dir} ...",
        flush=True,
    )
    job.run(
        config,
        run_dir,
        classify=classify,
        num_classes=int(meta["num_classes"]),
        meta={"checkpoint": str(model_dir), **meta},
    )

    summary = analysis.summarize_run(run_dir)
    radii = [0.0, config.sigma / 2, config.sigma, 2 * config.sigma]
    out = run_dir / "analysis"
    out.mkdir(exist_ok=True)
    table = analysis.markdown_table([summary], radii)
    (out / "summary.md").write_text(table + "\n")
    analysis.plot_curves([summary], out / "curves.png")
    analysis.write_curves_csv([summary], out / "curves.csv")
    print()
    print(table)
    print()
    print(f"plot: {out / 'curves.png'}\ncurves: {out / 'curves.csv'}")
    print(f"rows: {run_dir / 'rows.jsonl'}")
    return 0
