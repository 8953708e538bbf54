"""A smoke form of every benchmark script that RESULTS.md quotes (the suite's parts
run in tests/test_benchmarks.py, bench_streaming.py in tests/test_streaming.py),
on rows and classifiers written here or on the committed run rows."""

import argparse
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _job_helpers import write_checkpoint

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
RUNS = BENCHMARKS / "runs"

sys.path.insert(0, str(BENCHMARKS))
import ablation_table  # noqa: E402
import attack_comparison  # noqa: E402
import bench_adaptive  # noqa: E402
import bench_batched  # noqa: E402
import bench_certify_at  # noqa: E402
import bench_counting  # noqa: E402
import bench_localize  # noqa: E402
import bench_mask_width  # noqa: E402
import bench_peer  # noqa: E402
import bench_train  # noqa: E402
import certificates_table  # noqa: E402
import check_committed_rows  # noqa: E402
import drs_theta  # noqa: E402
import drs_votes  # noqa: E402
import practical_breakdown  # noqa: E402
import sdm_combination_shares  # noqa: E402
import sdm_under_attacks  # noqa: E402

sys.path.pop(0)


def _row(label, base, undefended, prediction, certified, covered, loc, clean_loc):
    return dict(
        label=label, base_clean_prediction=base,
        undefended_adv_prediction=undefended, prediction=prediction,
        certified=certified, covered=covered, localization=loc,
        clean_localization=clean_loc, clean_prediction=label,
    )  # fmt: skip


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory):
    """An untrained ``tiny_cnn`` work dir for digits (32x32x3, 10 classes, sigma
    3): the scripts read it as a trained one."""
    workdir = tmp_path_factory.mktemp("checkpoint") / "digits"
    write_checkpoint(workdir, dataset="digits", shape=(32, 32, 3), num_classes=10,
                     sigma=3.0)  # fmt: skip
    return workdir


# ----------------------------------------------------------- rows and tables


def test_the_breakdown_counts_each_group():
    rows = [
        _row(1, 1, 0, 1, True, True, "located", "no_change"),  # fooled, saved
        _row(1, 1, 0, 0, True, True, "located", "located"),  # fooled, lost
        _row(2, 2, 2, 3, True, False, "no_change", "no_change"),  # not fooled
        _row(3, 0, 0, -1, False, False, "multiple_regions", "located"),  # base wrong
    ]
    rows[3]["clean_prediction"] = 0
    lines = practical_breakdown.breakdown(rows).split("\n")
    assert lines[2] == "| all images | 4 | 2 | 1 | 1 | 2 | 1 | 1 |"
    assert lines[3] == "| base wrong on the clean image | 1 | 0 | 0 | 1 | 0 | 0 | 0 |"
    assert (
        lines[4] == "| base right, fooled by the attack | 2 | 2 | 0 | 0 | 2 | 1 | 1 |"
    )
    assert lines[5] == "| base right, not fooled | 1 | 0 | 1 | 0 | 0 | 0 | 0 |"
    assert lines[9] == "| located | 1 | 0 | 0 | 1 |"
    assert lines[10] == "| no_change | 2 | 0 | 0 | 0 |"


def test_the_breakdown_of_the_committed_run_is_the_one_results_quotes(capsys):
    assert practical_breakdown.main([str(RUNS / "cifar10_practical")]) == 0
    out = capsys.readouterr().out
    assert "| all images | 500 | 376 | 106 | 18 | 332 | 313 | 254 |" in out
    fooled = "| base right, fooled by the attack | 322 | 300 | 12 | 10 | 292 | 247 |"
    assert fooled in out


def test_the_paired_table_says_why_the_second_attack_won():
    def row(index, undefended, prediction, certified, covered, loc="located"):
        return dict(
            _row(1, 1, undefended, prediction, certified, covered, loc, loc),
            index=index,
        )

    standard = [
        row(0, 0, 1, True, True),  # certified
        row(1, 0, 1, True, True),  # certified
        row(2, 1, 1, False, False),  # right
        row(3, 0, 0, True, True),  # wrong
        row(9, 0, 1, True, True),  # only in the standard run
    ]
    adaptive = [
        row(0, 0, 1, True, False, "no_change"),  # right: mask missed the patch
        row(1, 0, -1, False, True),  # wrong: covered, smoothing abstained
        row(2, 1, 0, True, False),  # wrong: the base was not fooled
        row(3, 0, 1, True, True),  # certified: better than the standard attack
    ]
    text = attack_comparison.paired(standard, adaptive)
    lines = text.split("\n")
    assert lines[0].startswith("4 images in both runs")
    assert lines[4] == "| certified | 0 | 1 | 1 | 2 |"
    assert lines[5] == "| right | 0 | 0 | 1 | 1 |"
    assert lines[6] == "| wrong | 1 | 0 | 0 | 1 |"
    assert lines[7] == "| total | 1 | 1 | 2 | 4 |"
    assert "adaptive worse on 3 images, better on 1:" in lines
    assert "- base classifier not fooled: 1" in lines
    assert "- mask covered the patch, smoothing failed: 1" in lines
    assert "- mask missed the patch (no_change): 1" in lines
    assert lines[-2].endswith("both attacks 3, standard only 0, adaptive only 0, "
                              "neither 1")  # fmt: skip
    named = attack_comparison.paired(standard, adaptive, ("pgd", "vote"))
    assert "vote worse on 3 images, better on 1:" in named.split("\n")
    with pytest.raises(ValueError, match="share no test image"):
        attack_comparison.paired(standard[:1], adaptive[1:])


def test_the_attack_comparison_of_the_committed_runs_gives_results_tables(capsys):
    runs = [RUNS / name for name in ("cifar10_practical", "cifar10_adaptive",
                                     "cifar10_vote")]  # fmt: skip
    assert attack_comparison.main([str(r) for r in runs]) == 0
    out = capsys.readouterr().out
    assert out.startswith("50 images in all 3 runs")
    # RESULTS.md, Attacks: the 50 images all three hold (the table's percentages
    # as fractions) and the paired PGD / adaptive table.
    assert ("| cifar10_vote | vote_adaptive | 50 | 0.660 | 0.300 | 0.200 | 0.180 "
            "| 0.700 | 28 / 20 / 2 |") in out  # fmt: skip
    assert ("| cifar10_adaptive | adaptive | 50 | 0.540 | 0.620 | 0.420 | 0.280 "
            "| 0.840 | 37 / 10 / 3 |") in out  # fmt: skip
    paired = out[out.index("columns: cifar10_adaptive attack") :]
    assert "| certified | 18 | 1 | 4 | 23 |" in paired
    assert "| total | 21 | 6 | 23 | 50 |" in paired
    assert "100 images in both runs; rows: cifar10_practical attack, " in out


def test_the_attack_comparison_refuses_a_clean_mode_and_one_run(capsys):
    assert attack_comparison.main([str(RUNS / "cifar10_practical"),
                                   str(RUNS / "cifar10_center")]) == 2  # fmt: skip
    assert "not an attacked mode" in capsys.readouterr().err
    with pytest.raises(ValueError, match="at least two runs"):
        attack_comparison.compare({"a": []}, {"a": "practical"}, [0.0])


# ------------------------------------------------------------ timing scripts


def test_mask_width_accuracies_see_noise_only_inside_the_square():
    # A classifier that answers 1 when any pixel of its top-left 4x4 corner
    # leaves [0, 1], else 0: noise in a centred square never reaches the corner.
    def classify(images):
        corner = images[:, :4, :4, :]
        outside = jnp.any((corner < 0) | (corner > 1), axis=(1, 2, 3))
        return jax.nn.one_hot(outside.astype(jnp.int32), 2)

    images = np.full((40, 16, 16, 3), 0.5, np.float32)
    labels = np.zeros(40, np.int64)
    key = jax.random.key(0)
    centre, anywhere = bench_mask_width.accuracies(
        classify, images, labels, 4, 3.0, key, batch=16
    )
    assert centre == 1.0  # the centred 4x4 square is rows and columns 6..9
    assert 0.0 < anywhere < 1.0  # some random squares overlap the corner
    full, _ = bench_mask_width.accuracies(classify, images, labels, 16, 3.0, key)
    assert full == 0.0


def test_bench_train_trains_and_evaluates_the_checkpoint(tmp_path):
    # The digits smoke model (tiny_cnn, two steps) by ``python -m train``, then
    # evaluated on the 300 test digits.
    workdir = tmp_path / "digits"
    result = bench_train.main(
        ["--workdir", str(workdir), "--config", "digits:smoke", "--draws", "2"]
    )
    assert (workdir / "model.json").is_file()
    assert result["dataset"] == "digits" and result["test_images"] == 300
    assert result["train_seconds"] > 0 and result["draws"] == 2
    assert 0.0 <= result["noisy_accuracy_min"] <= result["noisy_accuracy_mean"] <= 1
    assert 0.0 <= result["clean_accuracy"] <= 1.0
    assert result["machine"]["cpu_count"] >= 1
    assert "tta_accuracy" not in result
    argv = ["--workdir", str(workdir), "--no-train", "--draws", "1"]
    views = bench_train.main([*argv, "--tta", "mirror_translate"])
    assert views["clean_accuracy"] == result["clean_accuracy"]
    assert views["tta"] == "mirror_translate" and 0.0 <= views["tta_accuracy"] <= 1.0


def test_bench_mask_width_main_writes_one_row_per_width(digits_checkpoint, tmp_path):
    out = tmp_path / "width.json"
    argv = ["--checkpoint", str(digits_checkpoint), "--dataset", "digits",
            "--num_images", "20", "--widths", "0", "5", "--out", str(out)]  # fmt: skip
    assert bench_mask_width.main(argv) == 0
    result = json.loads(out.read_text())
    assert [r["width"] for r in result["rows"]] == [0, 5]
    assert result["rows"][0]["centre"] == result["rows"][0]["random"]  # no noise
    assert all(0.0 <= r["centre"] <= 1.0 for r in result["rows"])


def test_bench_certify_at_agrees_with_fixed_certify(digits_checkpoint, tmp_path):
    out = tmp_path / "certify_at"
    argv = ["--checkpoint", str(digits_checkpoint), "--num_images", "2",
            "--n", "200", "--n0", "10", "--batch_size", "64", "--radius", "1.0",
            "--out", str(out)]  # fmt: skip  200 draws cannot reach 8.66 at sigma 3
    result = bench_certify_at.main(argv)
    assert len(result["rows"]) == 2
    for row in result["rows"]:
        assert row["fixed"]["draws"] == 210
        for method in bench_certify_at.METHODS:
            assert 0 < row[method]["draws"] <= 210
            assert row[method]["seconds"] > 0
    assert out.with_suffix(".json").is_file()
    assert "| certify_at_futility |" in out.with_suffix(".md").read_text()


def test_bench_adaptive_smoke_rates_each_attack(digits_checkpoint, tmp_path):
    out = tmp_path / "adaptive.json"
    argv = ["--checkpoint", str(digits_checkpoint), "--n", "2", "--smoke",
            "--objectives", "eot_noise", "--location_chunk", "2",
            "--out", str(out)]  # fmt: skip
    results = bench_adaptive.main(argv)
    assert [r["attack"] for r in results] == ["patch_attack", "adaptive:eot_noise"]
    for r in results:
        for field in ("base_acc", "covered", "no_change", "multiple_regions",
                      "mrs_acc"):  # fmt: skip
            assert 0.0 <= r[field] <= 1.0, field
        assert r["attack_seconds_per_image"] > 0
    assert json.loads(out.read_text())["rows"] == results


def test_sdm_combination_shares_prints_both_kinds(digits_checkpoint, capsys):
    argv = [str(digits_checkpoint), "--dataset", "digits", "--images", "1"]
    sdm_combination_shares.main(argv)
    lines = capsys.readouterr().out.strip().split("\n")
    assert lines[0] == f"# {digits_checkpoint}"
    assert lines[1].startswith("0 label ")
    assert "one mask: min" in lines[1] and "two masks: min" in lines[1]
    medians = [float(m) for m in re.findall(r"median (\S+)", lines[1])]
    assert len(medians) == 2 and all(0.0 <= m <= 1.0 for m in medians)


def test_bench_batched_smoke_returns_the_loops_rows():
    result = bench_batched.main(["--smoke"])
    assert set(result["results"]) == {"loop", "batched_1", "batched_2"}
    for name, r in result["results"].items():
        assert r["same_fields_as_loop"], name
        assert r["images_per_second"] > 0
    assert result["num_images"] == 4


def test_bench_counting_measures_each_fold_in_a_subprocess(tmp_path):
    out = tmp_path / "counting.json"
    argv = ["--models", "tiny_cnn", "--chunks", "16", "--fold", "0", "1", "--n",
            "32", "--repeats", "1", "--json", str(out)]  # fmt: skip
    assert bench_counting.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["fold"], r["chunk"]) for r in rows] == [(0, 16), (1, 16)]
    for r in rows:
        assert r["counting_samples_per_s"] > 0 and r["forward_samples_per_s"] > 0
        # Possible figures: counting runs the forward pass and more, so it is
        # never much faster (3x allows noise; a timer that missed the work once
        # reported 175x).
        assert r["counting_samples_per_s"] <= 3 * r["forward_samples_per_s"], r


def test_bench_counting_overhead_figures_are_possible():
    row = bench_counting.overhead("tiny_cnn", 64, shape=(16, 16, 3), reps=2,
                                  repeats=2)  # fmt: skip
    assert 0 < row["sample_counts_samples_per_s"] <= 3 * row["forward_images_per_s"]


def test_bench_counting_overhead_blocks_on_the_counts(monkeypatch):
    # Counting that takes a known time: the overhead's timer must wait for it.
    import time

    import mrs_jax

    class Slow:
        def block_until_ready(self):
            time.sleep(0.05)
            return self

    monkeypatch.setattr(mrs_jax, "sample_counts", lambda *a, **k: Slow())
    row = bench_counting.overhead("tiny_cnn", 8, shape=(16, 16, 3), reps=1,
                                  repeats=1)  # fmt: skip
    assert row["sample_counts_samples_per_s"] <= 8 / 0.05
    assert "| tiny_cnn | 8 |" in bench_counting.overhead_markdown([row])


def test_bench_peer_runs_the_jax_side_alone(tmp_path, capsys):
    out = tmp_path / "peer.json"
    argv = ["--depths", "8", "--batches", "8", "--n", "16", "--repeats", "1",
            "--jax_classifiers", "folded", "--json", str(out)]  # fmt: skip
    assert bench_peer.main(argv) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["torch"] is None and "count_ratio" not in row
    assert row["jax"]["counting_samples_per_s"] > 0
    assert "| 8 | 8 | 16 | folded | - |" in capsys.readouterr().out


def test_peer_torch_certify_counts_when_torch_is_there():
    pytest.importorskip("torch")
    command = [sys.executable, str(BENCHMARKS / "peer_torch_certify.py"),
               "--depth", "8", "--batch", "8", "--n", "16",
               "--threads", "1"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["counting_samples_per_s"] > 0


def test_bench_localize_psnr_and_localisation_time():
    images, _ = bench_localize.load_dataset("digits", "test", max_examples=2)
    rng = np.random.default_rng(0)
    line = bench_localize.psnr_table("digits", images, 5, 4, 100, rng)
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:5] == ["digits", "2", "5", "4", "49"]
    assert all(float(c) > 0 for c in cells[5:])

    def classify(batch):  # brightness decides: a classifier with no training
        return jnp.stack([batch.mean((1, 2, 3)), 0.5 * jnp.ones(len(batch))], -1)

    lines = bench_localize.end_to_end(jax.tree_util.Partial(classify), images, 1)
    assert lines[2].startswith("| telea | 5 | 784 |")
    assert lines[3].startswith("| harmonic | 5 | 784 |")
    assert float(lines[2].split("|")[4]) > 0


def test_check_committed_rows_finds_equal_and_changed_rows(
    digits_checkpoint, tmp_path, capsys
):
    # The centre mask: python -m certify's whole path without an attack to compile.
    config = tmp_path / "center.py"
    config.write_text(
        "from mrs_jax.job import JobConfig\n\n\ndef get_config(smoke=False):\n"
        "    return JobConfig(mode='center', dataset='digits', num_images=1, "
        "patch_size=5, sigma=3.0, n0=10, n=100, batch_size=64)\n"
    )
    args = argparse.Namespace(
        config=str(config), checkpoint=str(digits_checkpoint), num_images=1
    )
    committed = tmp_path / "committed"
    check_committed_rows.certify(args, committed, 1)
    argv = ["--run", str(committed), "--config", str(config), "--checkpoint",
            str(digits_checkpoint), "--num_images", "1"]  # fmt: skip
    assert check_committed_rows.main(argv) == 0
    assert "images_per_batch=1: 1 rows," in capsys.readouterr().out
    (row,) = check_committed_rows.rows_of(committed / "rows.jsonl")
    changed = dict(row, prediction=row["prediction"] + 1, seconds=0.0)
    assert check_committed_rows.differences([row], [changed]) == [
        f"{row['index']}.prediction: {row['prediction']!r} -> "
        f"{row['prediction'] + 1!r}"
    ]


def test_the_demo_seeds_script_parses_and_names_what_exists():
    script = BENCHMARKS / "demo_seeds.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    for path in ("train/configs/digits.py", "certify/configs/digits.py",
                 "benchmarks/runs/digits_practical"):  # fmt: skip
        assert path in text and (ROOT / path).exists(), path


def test_the_protocol_script_parses_and_names_what_exists():
    script = BENCHMARKS / "cifar10_protocol.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    for config in ("certify/configs/cifar10_cpu.py",
                   "certify/configs/cifar10_cpu_pc.py",
                   "certify/configs/cifar10_cpu_adaptive.py",
                   "train/configs/cifar10_cpu_occlusion.py"):  # fmt: skip
        assert config in text and (ROOT / config).is_file(), config
    for checkpoint in ("cifar10_cpu", "cifar10_cpu_occlusion"):
        assert (BENCHMARKS / "checkpoints" / checkpoint / "model.json").is_file()
    for run in ("cifar10_pc", "cifar10_practical", "cifar10_pc_occlusion",
                "cifar10_adaptive", "cifar10_center", "cifar10_gradcam"):  # fmt: skip
        assert f"$RUNS/{run}\"" in text or f"\"$RUNS\"/{run}" in text, run
        assert (RUNS / run / "run.json").is_file(), run


def test_the_airbench_protocol_script_parses_and_names_what_exists():
    script = BENCHMARKS / "cifar10_airbench_protocol.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    configs = set(re.findall(r"(?:train|certify)/configs/\w+\.py", text))
    assert len(configs) == 8
    for config in configs:
        assert (ROOT / config).is_file(), config
    assert (BENCHMARKS / "checkpoints/cifar10_airbench/model.json").is_file()
    for mode in ("center", "gradcam"):
        assert f"--mode {mode}" in text


def test_sdm_under_attacks_tables_answers_on_certified_images_and_on_all(tmp_path):
    def record(index, label, clean, certified, attacked, mrs):
        return {
            "run": "pgd", "index": index, "dataset_index": 10 + index,
            "label": label, "sdm_clean_prediction": clean,
            "sdm_certified": certified, "attacked_prediction": attacked,
            "mrs_prediction": mrs, "seconds": {"image": 1.0, "sdm": 2.0 + index},
        }  # fmt: skip

    records = [
        record(0, 3, 3, True, 3, 3),  # certified, right under attack
        record(1, 4, 4, True, -1, 2),  # certified, abstains under attack
        record(2, 5, 1, True, 1, 5),  # certified for a wrong label: not counted
        record(3, 6, 6, False, 2, 6),  # not certified, wrong under attack
    ]
    out = tmp_path / "sdm.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"run": "pg')
    assert sdm_under_attacks.done_keys(out) == {("pgd", 10 + i) for i in range(4)}
    out.write_text("".join(json.dumps(r) + "\n" for r in records))
    table = sdm_under_attacks.table(out)
    assert "| pgd | 4 | 2 | 1 / 1 / 0 | 1 / 1 / 2 | 3 | 3.5 |" in table, table


def test_the_ablation_rows_each_take_out_one_trick_of_the_recipe():
    from mrs_jax.configs.train.cifar10_airbench import get_config
    from mrs_jax.core import configfile
    from mrs_jax.models import get_model

    script = BENCHMARKS / "cifar10_airbench_ablation.sh"
    printed = subprocess.run(
        ["bash", str(script)], env={"DRY_RUN": "1", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    configs = {}
    for line in printed.splitlines():
        name, *args = line.rstrip("\t").split("\t")
        rest, overrides = configfile.split_overrides(args)
        assert rest == []
        configs[name] = configfile.override(get_config(), overrides)
    recipe = configs.pop("recipe")
    assert (recipe.epochs, recipe.whiten_bias_epochs, recipe.ema_start_epoch) == (
        4, 1, 1,
    )  # fmt: skip
    taken_out = {
        "no_whitening": {"whiten_examples": 0, "whiten_bias_epochs": None},
        "no_dirac": {"model_kwargs": (*recipe.model_kwargs, ("dirac", False))},
        "bn_scale": {"model_kwargs": (*recipe.model_kwargs, ("bn_scale", True))},
        "no_bias_rate": {"bias_lr_scale": 1.0},
        "no_label_smoothing": {"label_smoothing": 0.0},
        "no_lookahead": {"ema_start_epoch": None},
        "random_flips": {"flip_mode": "random"},
        "no_translation": {"crop_pad": 0},
    }
    assert set(configs) == set(taken_out)
    for name, changes in taken_out.items():
        assert configs[name] == dataclasses.replace(recipe, **changes), name
    # The model options exist: the rows would otherwise stop at start-up.
    for name in ("no_dirac", "bn_scale"):
        kwargs = dict(configs[name].model_kwargs)
        get_model("airbench_tiny", num_classes=10, seed=0, **kwargs)


def test_the_ablation_table_sets_each_row_against_the_short_recipe(tmp_path):
    short = tmp_path / "airbench_ablation"
    short.mkdir()
    def result(clean, sigma=7.0, **more):  # fmt: skip
        return json.dumps({"epoch": 4, "clean_accuracy": clean, "sigma": sigma,
                           "noisy_accuracy_mean": clean - 0.02, **more})  # fmt: skip
    (short / "recipe.json").write_text(result(0.85))
    (short / "no_dirac.json").write_text(result(0.8325))
    (short / "no_dirac.metrics.jsonl").write_text(
        '{"epoch": 1, "seconds": 400.5}\n{"epoch": 2, "seconds": 399.5}\n'
    )
    (tmp_path / "cifar10_airbench_no_noise_eval.json").write_text(
        result(0.91, sigma=0.0, train_seconds=3960.0)
    )
    (tmp_path / "cifar10_airbench_eval.json").write_text(result(0.8912))
    recipe_metrics = tmp_path / "checkpoints" / "cifar10_airbench" / "metrics.jsonl"
    recipe_metrics.parent.mkdir(parents=True)
    recipe_metrics.write_text('{"epoch": 1, "seconds": 1000.4}\n')
    lines = ablation_table.table(tmp_path, tmp_path / "checkpoints").splitlines()
    assert len(lines) == 2 + len(ablation_table.FULL_ROWS) + 9
    row = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in lines[2:]}
    assert row["without identity initialisation"] == [
        "4", "83.25", "81.25", "-1.75", "800 |",
    ]  # fmt: skip
    assert row["the new recipe, 4 epochs"][:4] == ["4", "85.00", "83.00", ""]
    # Without the noise there is no accuracy under it to report; its clean
    # accuracy is set against the full recipe's, whose seconds are its epochs'.
    assert row["new recipe without the noise (sigma 0)"] == [
        "4", "91.00", "", "+1.88", "3,960 |",
    ]  # fmt: skip
    assert row["new recipe (`cifar10_airbench`)"] == [
        "4", "89.12", "87.12", "", "1,000 |",
    ]  # fmt: skip
    assert row["without label smoothing"][1] == "not yet run"
    assert "not yet run" in row["old recipe (`cifar10_cpu`, `fast_cnn`)"]


def test_the_certificates_table_reads_each_certificate_at_every_content(tmp_path):
    marker = "true unrestricted (s*sqrt(C))"
    practical = {
        "name": "mrs", "mode": "practical", "num_images": 200,
        "clean_accuracy": 0.79, "certificate": "localised",
        "localised_certified": {"0": 0.69},
        "markers": {marker: {"radius": 8.66, "localised_certified": 0.65}},
        "seconds_per_image": {"attack": 9.0, "clean": 15.0, "localize": 0.5,
                              "certify": 14.0, "total": 38.5},
    }  # fmt: skip
    drs = {
        "name": "drs", "mode": "drs", "num_images": 200, "clean_accuracy": 0.8,
        "certificate": "every patch position", "certified": {"0": 0.55},
        "markers": {marker: {"radius": 8.66, "certified": 0.55}},
        "seconds_per_image": {"drs": 0.25, "total": 0.25},
    }  # fmt: skip
    checkpoint = tmp_path / "twin"
    checkpoint.mkdir()
    (checkpoint / "model.json").write_text('{"model": "airbench"}')
    (checkpoint / "metrics.jsonl").write_text(
        '{"epoch": 1, "seconds": 1800}\n{"epoch": 2, "seconds": 1200}\n'
    )
    lines = certificates_table.table([practical, drs], {"drs": checkpoint})
    lines = lines.splitlines()
    assert lines[2].split(" | ")[2:5] == ["79.0", "65.0", "14.5 (row 38.5)"]
    assert lines[3].split(" | ")[1:5] == [
        "`twin` (airbench, 2 epochs, 50 min wall, median epoch 25.0 min)",
        "80.0", "55.0", "0.25",
    ]  # fmt: skip
    assert "every patch position and content |" in lines[3]
    assert "DRS (Levine & Feizi), as published | | 83.9 | 56.3" in lines[4]
    assert lines[-1].startswith("Images: 200 ")
    with pytest.raises(SystemExit):
        certificates_table.main([str(tmp_path / "s.json"), "--model", "drs"])


def test_drs_votes_explains_a_run_from_its_votes(tmp_path, capsys):
    # Two right answers of 32 bands: a lead of 14 certifies 4x4 patches
    # (delta = 7, a lead of 14 needed) but not 5x5 (16); a lead of 2 none.
    run = tmp_path / "drs"
    run.mkdir()
    config = {"mode": "drs", "drs_band": 4, "drs_mode": "column"}
    (run / "run.json").write_text(json.dumps({"config": config}))
    rows = [
        {"index": 0, "label": 0, "prediction": 0, "certified": False,
         "votes": [22, 8, 2] + [0] * 7},
        {"index": 1, "label": 1, "prediction": 1, "certified": False,
         "votes": [10, 12, 10] + [0] * 7},
    ]  # fmt: skip
    (run / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = drs_votes.summary(rows, 4, "column", max_patch=5)
    assert result["true_vote_share"] == pytest.approx(34 / 64)
    assert result["three_quarters"] == 0.0  # 22 < 24
    assert result["right_not_certified"] == 2
    assert result["median_lead_of_those"] == 8.0
    assert result["certified_by_patch"] == {1: 0.5, 2: 0.5, 3: 0.5, 4: 0.5, 5: 0.0}
    drs_votes.main([str(run), "--max_patch", "5"])
    assert "4x4: 50.0, 5x5: 0.0" in capsys.readouterr().out
    (run / "run.json").write_text(json.dumps({"config": {"mode": "practical"}}))
    with pytest.raises(SystemExit, match="not a drs run"):
        drs_votes.main([str(run)])


def _drs_run(path, theta, rows, weights="w1"):
    path.mkdir()
    config = {"mode": "drs", "drs_band": 4, "drs_mode": "column",
              "patch_size": 5, "drs_theta": theta}  # fmt: skip
    meta = {"config": config, "model": {"weights_sha256": weights}}
    (path / "run.json").write_text(json.dumps(meta))
    lines = [
        json.dumps({"index": i, "label": 0, "prediction": p, "certified": c})
        for i, (p, c) in enumerate(rows)
    ]
    (path / "rows.jsonl").write_text("\n".join(lines) + "\n")
    return path


def test_drs_theta_chooses_on_the_tune_images_and_reports_the_others(
    tmp_path, capsys
):
    # Images 0-1 are reported, 2-5 tune. theta 0.3 certifies more of the tune
    # images, theta 0 more of the reported ones: 0.3 must be chosen all the same,
    # and a certified wrong answer counts as not certified.
    low = _drs_run(tmp_path / "t0", 0.0, [(0, True)] * 2 + [(0, True), (1, True),
                                                            (0, False), (0, False)])
    high = _drs_run(tmp_path / "t3", 0.3, [(0, False)] * 2 + [(0, True)] * 3
                    + [(0, False)])  # fmt: skip
    table = drs_theta.sweep([high, low], range(2, 6), range(0, 2))
    assert [e["theta"] for e in table] == [0.0, 0.3]
    assert [e["chosen"] for e in table] == [False, True]
    assert table[0]["tune"] == (0.75, 0.25) and table[0]["report"] == (1.0, 1.0)
    assert table[1]["tune"] == (1.0, 0.75) and table[1]["report"] == (1.0, 0.0)
    drs_theta.main([str(low), str(high), "--tune", "2:6", "--report", "0:2"])
    out = capsys.readouterr().out
    assert "| 0.3 (chosen) | 100.0 | 75.0 | 100.0 | 0.0 |" in out
    assert "clean 100.0, certified 0.0." in out
    with pytest.raises(SystemExit, match="have no row yet"):
        drs_theta.main([str(low), "--tune", "2:9", "--report", "0:2"])
    other = _drs_run(tmp_path / "other", 0.5, [(0, True)] * 6, weights="w2")
    with pytest.raises(SystemExit, match="differs from"):
        drs_theta.sweep([low, other], range(2, 6), range(0, 2))
    with pytest.raises(SystemExit):  # overlapping slices: one line, exit 2
        drs_theta.main([str(low), "--tune", "0:4", "--report", "0:2"])
