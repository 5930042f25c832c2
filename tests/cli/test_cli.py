"""``python -m trainer`` as a user runs it: in a subprocess, from a folder outside the repo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[2]


def trainer_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore"}
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
    assert "Epoch 4" in result.stderr + result.stdout  # the progress bar showed


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
    assert metrics["tested_weights"] == str(run_dir / "checkpoints" / "last.ckpt")


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


def test_resume_continues_from_the_saved_epoch(default_run, tmp_path):
    _, first = default_run
    first_metrics = json.loads((first / "metrics.json").read_text())
    result = trainer_cli(f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}",
                         "trainer.max_epochs=6", f"hydra.run.dir={tmp_path / 'resumed'}",
                         cwd=tmp_path)
    assert_ok(result)
    assert "Restored all states" in result.stdout + result.stderr
    metrics = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    steps_per_epoch = first_metrics["global_step"] // 5
    assert metrics["epochs"] == 6
    assert metrics["global_step"] == first_metrics["global_step"] + steps_per_epoch


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
])
def test_bad_overrides_fail_with_one_line_naming_the_key(tmp_path, override, key):
    result = trainer_cli(*override.split(), cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {key}: ")
    assert not list(tmp_path.iterdir())  # refused before any run folder was made


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
