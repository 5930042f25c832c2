"""``python -m trainer`` as a user runs it: in a subprocess, from a folder outside the repo."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[2]


def trainer_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-m", "trainer", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, (f"stdout:\n{result.stdout[-3000:]}\n"
                                    f"stderr:\n{result.stderr[-3000:]}")


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The default recipe (digits, MLP), cut to 5 epochs."""
    cwd = tmp_path_factory.mktemp("default")
    run_dir = cwd / "run"
    result = trainer_cli("trainer.max_epochs=5", f"hydra.run.dir={run_dir}", cwd=cwd)
    assert_ok(result)
    return result, run_dir


def test_default_run_reports_metrics_folder_and_tensorboard_command(default_run):
    result, run_dir = default_run
    lines = result.stdout.splitlines()
    assert any(line.startswith("test/acc ") for line in lines)
    assert f"run folder: {run_dir}" in lines
    assert f"tensorboard --logdir {run_dir}" in lines
    assert any(line.startswith("best epoch ") for line in lines)


def test_default_run_into_a_file_prints_a_line_per_epoch_and_nothing_else(default_run):
    """No TTY: no progress bar, one line per epoch; Lightning's notes and tips, and others'
    deprecation warnings, stay out of the output (``verbose=true`` brings them back)."""
    result, _ = default_run
    epochs = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == [f"{e}/5" for e in range(1, 6)]
    assert all("val/acc" in line and "train/loss" in line for line in epochs)
    assert "\r" not in result.stdout + result.stderr
    assert result.stderr == ""


def test_verbose_shows_lightnings_own_messages(tmp_path):
    result = trainer_cli("verbose=true", "trainer.max_epochs=1",  # (fast_dev_run: no summary)
                         f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert_ok(result)
    output = result.stdout + result.stderr  # (Hydra's console handler may take the summary)
    assert "GPU available" in output and "Total params" in output


def test_default_run_learns_digits(default_run):
    _, run_dir = default_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["test"]) == {"test/acc", "test/f1", "test/loss"}
    assert metrics["test"]["test/acc"] >= 0.95
    assert metrics["epochs"] == 5


def test_run_folder_holds_resolved_config_checkpoints_and_events(default_run):
    _, run_dir = default_run
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["data"]["name"] == "digits" and resolved["model"]["name"] == "mlp"
    assert "${" not in (run_dir / "config.yaml").read_text()
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list(run_dir.glob("events.out.tfevents.*"))


def test_checkpoints_load_with_weights_only(default_run):
    _, run_dir = default_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for name in ("best.ckpt", "last.ckpt"):
        checkpoint = torch.load(run_dir / "checkpoints" / name, weights_only=True)
        assert checkpoint["hyper_parameters"]["model"]["name"] == "mlp"
        assert checkpoint["hyper_parameters"]["config"]["data"]["name"] == "digits"
        assert checkpoint["global_step"] <= metrics["global_step"]
    # last.ckpt follows the run to its end (not just to the best epoch).
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == metrics["global_step"] and last["epoch"] == 4
    # the test stage used the best validation epoch's weights
    assert metrics["tested_weights"] == str(run_dir / "checkpoints" / "best.ckpt")
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    assert metrics["best"]["epoch"] == best["epoch"] + 1
    assert metrics["stopped_early"] is False


def test_best_epoch_is_the_one_with_the_highest_val_acc(default_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run_dir = default_run
    best = json.loads((run_dir / "metrics.json").read_text())["best"]
    events = EventAccumulator(str(run_dir))
    events.Reload()
    accuracies = [event.value for event in events.Scalars("val/acc")]
    assert best["val/acc"] == pytest.approx(max(accuracies))
    assert best["epoch"] == accuracies.index(max(accuracies)) + 1


def test_event_files_hold_the_expected_tags_and_hparams(default_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    _, run_dir = default_run
    events = EventAccumulator(str(run_dir))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/acc", "val/loss", "val/acc", "val/f1",
            "test/loss", "test/acc", "test/f1"} <= scalars
    lrs = [event.value for event in events.Scalars("train/lr")]
    assert lrs[0] > lrs[-1]  # the cosine schedule moved the rate
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        events.SummaryMetadata("_hparams_/experiment").plugin_data.content).experiment
    assert {info.name.tag for info in experiment.metric_infos} == {
        "test/acc", "test/f1", "test/loss"}
    start = plugin_data_pb2.HParamsPluginData.FromString(
        events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content)
    hparams = start.session_start_info.hparams
    assert hparams["optimizer/name"].string_value == "adamw"
    assert hparams["optimizer/lr"].number_value == pytest.approx(0.003)
    # the keys a result depends on, and those the command line set; not all ~70 config keys
    assert {"model/hidden", "data/name", "seed", "trainer/max_epochs"} <= set(hparams)
    assert not {"threads", "data/root", "callbacks/pictures/every_n_epochs"} & set(hparams)
    assert len(hparams) < 25


def test_resume_continues_from_the_saved_epoch(default_run, tmp_path):
    _, first = default_run
    first_metrics = json.loads((first / "metrics.json").read_text())
    result = trainer_cli(f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}",
                         "trainer.max_epochs=6", f"hydra.run.dir={tmp_path / 'resumed'}",
                         cwd=tmp_path)
    assert_ok(result)
    assert f"resuming {first} (in a new run folder)" in result.stdout
    metrics = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    steps_per_epoch = first_metrics["global_step"] // 5
    assert metrics["epochs"] == 6
    assert metrics["global_step"] == first_metrics["global_step"] + steps_per_epoch


@pytest.fixture
def run_copy(default_run, tmp_path):
    """A copy of the default run's folder, to resume without changing the original."""
    _, run_dir = default_run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    return copy


def test_resume_with_the_checkpoint_alone_goes_on_in_the_runs_own_folder(tmp_path):
    """ckpt_path alone: the run's overrides come from its folder, and the run continues
    there, its curves and its best/last checkpoints one consistent record."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    assert_ok(trainer_cli("trainer.max_epochs=2", "model.hidden=[32]", "optimizer.lr=1e-3",
                          f"hydra.run.dir={run_dir}", cwd=tmp_path))
    first = json.loads((run_dir / "metrics.json").read_text())
    result = trainer_cli(f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
                         "trainer.max_epochs=4", cwd=tmp_path)
    assert_ok(result)
    assert (f"resuming {run_dir} with its overrides model.hidden=[32] optimizer.lr=1e-3"
            in result.stdout)
    assert not (tmp_path / "outputs").exists()  # no new run folder
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 4 and metrics["global_step"] == first["global_step"] * 2
    # a small lr still climbs: the best checkpoint moved to a later epoch, under its own name
    assert metrics["best"]["epoch"] > first["best"]["epoch"]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt",
                                                                          "last.ckpt"]
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    assert best["epoch"] + 1 == metrics["best"]["epoch"]
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["trainer"]["max_epochs"] == 4 and resolved["model"]["hidden"] == [32]
    events = EventAccumulator(str(run_dir))
    events.Reload()
    steps = [event.step for event in events.Scalars("val/acc")]
    assert len(steps) == 4 and steps == sorted(steps)  # one curve, epochs 1 to 4
    assert "Checkpoint directory" not in result.stderr


def test_resuming_a_finished_run_says_there_is_nothing_to_do(run_copy, tmp_path):
    result = trainer_cli(f"ckpt_path={run_copy / 'checkpoints' / 'last.ckpt'}", cwd=tmp_path,
                         timeout=120)
    assert_ok(result)
    assert result.stdout.startswith("nothing to do: ")
    assert "trainer.max_epochs=5" in result.stdout and "mode=test" in result.stdout
    assert not (tmp_path / "outputs").exists()


def test_mode_test_evaluates_a_checkpoint_without_training(default_run, tmp_path):
    _, run_dir = default_run
    first = json.loads((run_dir / "metrics.json").read_text())
    before = (run_dir / "checkpoints" / "best.ckpt").read_bytes()
    result = trainer_cli(f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}", "mode=test",
                         f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path)
    assert_ok(result)
    assert f"evaluating {run_dir}" in result.stdout
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["mode"] == "test"
    assert metrics["test"] == first["test"]  # the same weights on the same test set
    assert not (tmp_path / "eval" / "checkpoints").exists()
    assert (run_dir / "checkpoints" / "best.ckpt").read_bytes() == before
    assert not any(line.startswith("epoch ") for line in result.stdout.splitlines())


def test_early_stopping_ends_the_fit_and_reports_the_best_epoch(tmp_path):
    # min_delta 1.0 on val/acc: no epoch after the first can improve, so patience 1 stops
    # the fit after epoch 2 of 6.
    run_dir = tmp_path / "run"
    result = trainer_cli("trainer.max_epochs=6", "callbacks.early_stopping.enabled=true",
                         "callbacks.early_stopping.monitor=val/acc",
                         "callbacks.early_stopping.mode=max",
                         "callbacks.early_stopping.min_delta=1.0",
                         "callbacks.early_stopping.patience=1", f"hydra.run.dir={run_dir}",
                         cwd=tmp_path)
    assert_ok(result)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["stopped_early"] is True and metrics["stopped_at_epoch"] == 2
    assert metrics["epochs"] == 2
    assert metrics["best"]["epoch"] in (1, 2) and set(metrics["best"]) >= {
        "epoch", "step", "val/acc", "val/loss", "val/f1"}
    assert "stopped early after epoch 2" in result.stdout


def test_experiment_with_overrides_and_csv_logger(tmp_path):
    run_dir = tmp_path / "moons"
    result = trainer_cli("experiment=moons_mlp", "trainer=debug", "model.hidden=[16,16]",
                         "logger=csv", "seed=3", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert_ok(result)
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["experiment"] == "moons_mlp" and resolved["data"]["name"] == "moons"
    assert resolved["model"]["hidden"] == [16, 16] and resolved["seed"] == 3
    assert resolved["trainer"]["detect_anomaly"] is True
    assert (run_dir / "metrics.csv").is_file()
    assert "tensorboard --logdir" not in result.stdout


def test_multirun_runs_one_job_per_value(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = trainer_cli("-m", "optimizer.lr=0.01,0.1", "trainer.fast_dev_run=true",
                         f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert_ok(result)
    rates = []
    for job in ("0", "1"):
        assert (sweep_dir / job / "metrics.json").is_file()
        rates.append(yaml.safe_load((sweep_dir / job / "config.yaml").read_text())
                     ["optimizer"]["lr"])
    assert rates == [0.01, 0.1]


def test_a_sweep_over_models_is_one_folder_with_a_summary(tmp_path):
    """The README's sweep: every job in one folder (by default, with no hydra.sweep.dir),
    and a table of the swept values against the final metrics, printed and in summary.csv."""
    result = trainer_cli("-m", "optimizer.lr=0.01,0.1", "model=mlp,cnn",
                         "trainer.fast_dev_run=true", cwd=tmp_path)
    assert_ok(result)
    sweeps = list((tmp_path / "multirun").glob("*/*"))
    assert len(sweeps) == 1, sweeps
    sweep_dir = sweeps[0]
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    assert (sweep_dir / "multirun.yaml").is_file()
    with open(sweep_dir / "summary.csv") as table:
        rows = list(csv.DictReader(table))
    assert [(r["optimizer.lr"], r["model"]) for r in rows] == [
        ("0.01", "mlp"), ("0.01", "cnn"), ("0.1", "mlp"), ("0.1", "cnn")]
    for row, job in zip(rows, "0123"):
        tested = json.loads((sweep_dir / job / "metrics.json").read_text())["test"]
        assert float(row["test/acc"]) == pytest.approx(tested["test/acc"])
    lines = result.stdout.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("job ")))
    assert lines[header].split() == ["job", "optimizer.lr", "model", "test/acc", "test/f1",
                                     "test/loss"]
    assert lines[header + 4].split()[:3] == ["3", "0.1", "cnn"]
    assert f"tensorboard --logdir {sweep_dir}" in lines


@pytest.mark.parametrize("override, key", [
    ("model.foo=1", "model.foo"),
    ("foo=1", "foo"),
    ("optimizer.lr=abc", "optimizer.lr"),
    ("optimizer.lr=0", "optimizer.lr"),
    ("optimizer.lr=-1", "optimizer.lr"),
    ("data.batch_size=0", "data.batch_size"),
    ("model=transformer", "model"),
    ("optimizer=lbfgs", "optimizer"),
    ("model.name=cnn", "model.name"),
    ("data=moons model=cnn", "model"),
    ("hydra.run.dir=${nowhere}", "hydra.run.dir"),
    ("mode=test", "mode"),
    ("trainer.max_epochs=abc", "trainer.max_epochs"),
])
def test_bad_overrides_fail_with_one_line_naming_the_key(tmp_path, override, key):
    result = trainer_cli(*override.split(), cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {key}: ")
    assert not list(tmp_path.iterdir())  # refused before any run folder was made


@pytest.mark.parametrize("override", ["seed=-1", "threads=0", "trainer.max_epochs=-5",
                                      "trainer=gpu"])
def test_bad_values_are_refused_before_lightning_is_imported(override):
    """Importing Lightning takes seconds: a bad value is refused before it, as fast as a bad
    key is."""
    if override == "trainer=gpu" and torch.cuda.is_available():
        pytest.skip("a GPU is visible here, so trainer=gpu is no error")
    probe = ("import sys\nfrom trainer.__main__ import main\ntry:\n"
             f"    main([{override!r}])\nexcept SystemExit as exit:\n"
             "    print(exit.code, 'lightning' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=120)
    assert result.stderr.startswith("error: "), result.stderr
    assert result.stdout.split() == ["2", "False"]


def test_bad_value_in_a_multirun_sweep_is_refused_before_any_job(tmp_path):
    result = trainer_cli("-m", "data.batch_size=32,0", cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: data.batch_size: must be >= 1, got 0"
    assert not (tmp_path / "multirun").exists()


def test_missing_idx_files_fail_with_how_to_get_them(tmp_path):
    result = trainer_cli("data=mnist", f"data.root={tmp_path / 'nothing'}",
                         f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: data.root: mnist: no ")
    assert "data.download=true" in errors[0]


def test_help_lists_the_config_groups(tmp_path):
    result = trainer_cli("--help", cwd=tmp_path, timeout=120)
    assert_ok(result)
    for group in ("model:", "data:", "optimizer:", "experiment:"):
        assert group in result.stdout
    assert "schema/" not in result.stdout  # the schemas' internal groups are not options
    model = next(line for line in result.stdout.splitlines() if line.startswith("  model:"))
    assert model.split(None, 1)[1] == "attention, autoencoder, cnn, cnn1d, gpt, mlp*, rnn"  # the default starred


def isolated_venv(path: Path) -> Path:
    """A new virtualenv, without ``--system-site-packages``, that sees this interpreter's
    installed packages (torch, Lightning, ...) through a path file, but not their ``.pth``
    hooks: an editable install of this checkout there stays invisible. Returns its python.

    ``venv --system-site-packages`` would not do: run from inside a virtualenv, it inherits
    the *base* interpreter's packages, not the virtualenv's (where a user installed them).
    """
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
    python = path / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                          "['purelib'])"], check=True, capture_output=True, text=True)
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (Path(own.stdout.strip()) / "outer_site_packages.pth").write_text("\n".join(ours) + "\n")
    return python


@pytest.mark.slow
def test_built_wheel_runs_from_outside_the_repo(tmp_path):
    """Build the wheel, install it into a fresh venv (torch etc. from this environment), and
    run it from a folder outside the repo."""
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "-w", str(dist), str(REPO)],
                           capture_output=True, text=True, timeout=600)
    if build.returncode != 0:  # no hatchling to build with offline: let pip fetch it
        build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w",
                                str(dist), str(REPO)], capture_output=True, text=True,
                               timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next(dist.glob("trainer-*.whl"))
    with zipfile.ZipFile(wheel) as archive:  # data=shakespeare_char's text ships inside
        assert "trainer/data/corpora/shakespeare.txt.gz" in archive.namelist()
    venv = tmp_path / "venv"
    python = isolated_venv(venv)
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--force-reinstall",
                    str(wheel)], check=True, capture_output=True, timeout=600)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # -I: ignore PYTHONPATH and the user site, so the editable checkout cannot stand in.
    where = subprocess.run([str(python), "-I", "-c", "import trainer.config as c; "
                            "print(c.__file__); print(c.config_dir())"], cwd=elsewhere,
                           capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    module_file, conf = where.stdout.split()
    assert str(venv) in module_file and conf.endswith(os.path.join("trainer", "conf"))
    result = subprocess.run([str(python), "-I", "-m", "trainer", "trainer.fast_dev_run=true"],
                            cwd=elsewhere, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((elsewhere / "outputs").rglob("metrics.json"))


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed"])
def test_gpu_trainer_runs_in_each_precision(tmp_path, precision):
    result = trainer_cli("trainer=gpu", f"trainer.precision={precision}", "trainer.max_epochs=3",
                         f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert_ok(result)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["test/acc"] >= 0.9
