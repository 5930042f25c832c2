"""Each benchmark script runs end to end on tiny settings and prints its table: the numbers in
benchmarks/README.md come from these scripts, so a script that breaks should fail CI. No
timing is asserted here (timing targets live in the benchmarks themselves)."""

from __future__ import annotations

import pytest

QUICK = ["--repeats", "2", "--warmup", "0", "--min-time", "0", "--threads", "1"]


def run(capsys, module, argv):
    module.main(argv)
    return capsys.readouterr().out


def test_layers_prints_every_requested_op_with_a_ratio(capsys):
    from benchmarks import layers

    out = run(capsys, layers, [*QUICK, "--only", "relu", "nll_loss"])
    assert "machine:" in out
    rows = [line for line in out.splitlines() if line.startswith("| relu")
            or line.startswith("| nll_loss")]
    assert len(rows) == 2 and all("[" in row for row in rows)


def test_op_sizes_prints_a_ratio_per_size_and_the_gap_per_million_elements(capsys):
    from benchmarks import op_sizes

    out = run(capsys, op_sizes, [*QUICK, "--only", "relu", "nll_loss"])
    rows = {line.split("|")[1].strip(): line for line in out.splitlines()
            if line.startswith("| relu") or line.startswith("| nll_loss")}
    assert set(rows) == {"relu Nx1024", "nll_loss Nx1000"}
    for sweep in op_sizes.SWEEPS:
        if sweep.name in rows:  # one "ratio (explicit / native)" cell per size
            assert rows[sweep.name].count(" / ") == len(sweep.sizes)


def test_op_sizes_cases_match_benchmarks_layers_at_its_size():
    """The sweeps time the same ops, arguments and parameters as benchmarks.layers."""
    from benchmarks import layers, op_sizes

    by_op = {case.op: case for case in layers.CASES}
    for sweep in op_sizes.SWEEPS:
        swept = sweep.case(sweep.sizes[0])
        assert swept.op in by_op, sweep.name
        assert swept.kwargs == by_op[swept.op].kwargs or swept.op == "conv2d", sweep.name


def test_relu_floor_times_every_formulation_after_checking_its_gradient(capsys):
    from benchmarks import relu_floor

    out = run(capsys, relu_floor, [*QUICK, "--rows", "4"])
    rows = [line for line in out.splitlines() if line.startswith("| ")][2:]
    assert [row.split("|")[1].strip() for row in rows] == [v[0] for v in relu_floor.VARIANTS]
    saved = {row.split("|")[1].strip(): float(row.split("|")[-2]) for row in rows}
    assert saved["library: bit-packed mask (trainer.functional.relu)"] < 0.05
    assert saved["saved y, g * (y > 0)"] == 1.0


def test_models_prints_both_ratios_and_the_saved_bytes_breakdown(capsys):
    from benchmarks import models

    out = run(capsys, models, [*QUICK, "--only", "mlp", "--breakdown"])
    assert "| mlp (batch 256)" in out and "saved" in out and "| total" in out


def test_linear_limit_compares_both_implementations_to_the_bare_gemms(capsys):
    from benchmarks import linear_limit

    out = run(capsys, linear_limit, [*QUICK, "--rows", "8", "--in", "16", "--out", "8"])
    assert "| explicit" in out and "| native" in out


def test_conv_weight_grad_formulations_agree_with_native(capsys):
    from benchmarks import conv_weight_grad

    out = run(capsys, conv_weight_grad,
              [*QUICK, "--batch", "3", "--in", "4", "--out", "5", "--size", "6"])
    rows = [line for line in out.splitlines() if line.startswith("| ")][2:]  # past the header
    assert len(rows) == 5
    assert all(float(row.split("|")[-2]) < 1e-4 for row in rows)  # max abs error column


@pytest.mark.slow
def test_lightning_tax_runs_both_loops(capsys):
    from benchmarks import lightning_tax

    out = run(capsys, lightning_tax, ["--repeats", "1", "--epochs", "2", "--threads", "1",
                                      "data=moons", "model=mlp"])
    assert "| lightning recipe" in out and "| bare PyTorch" in out and "lightning / bare" in out
    assert "inside the recipe's training_step" in out
    assert "allocator: glibc malloc keeps freed memory" in out


@pytest.mark.slow
def test_lightning_tax_minimal_module_runs_in_place_of_the_recipe(capsys):
    from benchmarks import lightning_tax

    out = run(capsys, lightning_tax, ["--repeats", "1", "--epochs", "2", "--threads", "1",
                                      "--minimal-module", "data=moons", "model=mlp",
                                      "scheduler=cosine"])
    assert "| lightning, minimal module" in out and "| bare PyTorch" in out
    assert "| lightning recipe" not in out


def test_published_reads_the_accuracy_the_cli_prints_and_reports_a_failed_run(tmp_path,
                                                                             monkeypatch):
    from benchmarks import published

    monkeypatch.chdir(tmp_path)  # the run folders land here
    moons = next(row for row in published.ROWS if row.experiment == "moons_mlp")
    accuracy, seconds, folder = published.run(moons, ["trainer.max_epochs=2"])
    assert 0.5 < accuracy <= 1.0 and seconds > 0 and str(tmp_path) in folder
    accuracy, _, error = published.run(moons, ["trainer.max_epochs=-3"])
    assert accuracy is None and "exit 2" in error and "max_epochs" in error


def test_models_noise_floor_adds_an_a_over_a_row(capsys):
    from benchmarks import models

    out = run(capsys, models, [*QUICK, "--only", "mlp", "--noise-floor"])
    rows = [line for line in out.splitlines() if line.startswith("| mlp")]
    assert len(rows) == 2 and "A/A" in rows[1] and "(noise floor)" in rows[1]


def test_the_machine_line_tells_cpus_of_one_name_apart():
    from pathlib import Path

    from benchmarks import harness

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists() or "cpu family" not in cpuinfo.read_text():
        pytest.skip("no /proc/cpuinfo with a cpu family here")
    name = next(line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                if line.startswith("model name"))
    described = harness.cpu_model()
    assert described.startswith(name) and "(family " in described and " model " in described


@pytest.mark.slow
def test_compiled_backward_checks_and_times_both_formulas(capsys):
    from benchmarks import compiled_backward

    out = run(capsys, compiled_backward, [*QUICK, "--rows", "4"])
    rows = [line.split("|")[1:3] for line in out.splitlines()
            if line.startswith("| gelu") or line.startswith("| layer_norm")]
    assert [(op.strip(), name.strip()) for op, name in rows] == [
        ("gelu", "inductor-compiled backward"), ("gelu", "library"),
        ("layer_norm", "inductor-compiled backward"), ("layer_norm", "library")]


def test_explicit_mode_prints_the_call_and_model_step_ratios(capsys):
    pytest.importorskip("transformers")
    from benchmarks import explicit_mode

    out = run(capsys, explicit_mode, [*QUICK, "--only", "gelu", "resnet"])
    rows = [line for line in out.splitlines() if line.startswith("| 100 x gelu")
            or line.startswith("| resnet")]
    assert len(rows) == 2 and all("[" in row for row in rows)


def test_gpt_shakespeare_smoke_prints_the_step_ratio_saved_bytes_and_both_val_losses(capsys):
    from benchmarks import gpt_shakespeare

    out = run(capsys, gpt_shakespeare, ["--smoke", "--threads", "1"])
    assert "| ours (rules, fused loss)" in out and "| native (to_torch, cross_entropy)" in out
    assert "step time ours / native = " in out and "saved bytes ours / native = " in out
    losses = [float(line.split("|")[-2]) for line in out.splitlines()
              if line.startswith(("| ours", "| native"))]
    assert len(losses) == 2 and abs(losses[0] - losses[1]) < 1e-3  # same weights and batches


@pytest.mark.slow
def test_gpt_shakespeare_cli_times_both_runs(capsys):
    from benchmarks import gpt_shakespeare

    out = run(capsys, gpt_shakespeare, ["--cli", "--steps", "4", "--threads", "1",
                                        "data.train_batches=2", "data.eval_batches=1",
                                        "sample.max_new_tokens=0"])
    assert "ours / native tokens/s = " in out and "val loss at step 4: native" in out

