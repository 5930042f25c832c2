"""TensorBoard end to end: a short ``python -m trainer`` run, a real ``tensorboard`` server on a
loopback port, and the run's metrics, gradient flow, gradient checks, histograms and pictures
read back through the server's HTTP data API (the routes its web UI calls)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

HOST = "127.0.0.1"  # loopback only
RUN = "."  # the event files sit in the run folder itself, which is the logdir
EPOCHS, STEPS_PER_EPOCH = 2, 21  # digits: 1294 training samples in batches of 64
FLOW_EVERY, HISTOGRAMS_EVERY, CHECK_EVERY = 5, 10, 10
LAYERS = ["model.head.dense0.linear", "model.head.dense0.norm", "model.head.dense1.linear",
          "model.head.dense1.norm", "model.head.classifier"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tensorboard_run")
    run = folder / "run"
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "trainer", f"trainer.max_epochs={EPOCHS}",
         "trainer.enable_progress_bar=false",
         f"callbacks.gradient_flow.every_n_steps={FLOW_EVERY}",
         f"callbacks.gradient_flow.histograms_every_n_steps={HISTOGRAMS_EVERY}",
         f"callbacks.gradient_check.every_n_steps={CHECK_EVERY}",
         "callbacks.pictures.every_n_epochs=1", f"hydra.run.dir={run}"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return run


class TensorBoard:
    """A ``tensorboard`` server process and GETs against its data API."""

    def __init__(self, logdir: Path, log: Path):
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log = log
        with open(log, "w") as out:
            # load_fast=false: the pure-Python reader, no separate data-server binary.
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
                 "--host", HOST, "--port", str(self.port), "--load_fast=false",
                 "--reload_interval=1"], stdout=out, stderr=subprocess.STDOUT)

    def get(self, route: str, **params) -> bytes:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{route}{query}", timeout=10) as response:
            return response.read()

    def json(self, route: str, **params):
        return json.loads(self.get(route, **params))

    def wait_for(self, ready, timeout: float = 90.0):
        """Poll until ``ready()`` is truthy: the server must start, then load the events."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"tensorboard exited with {self.process.returncode}:\n"
                            f"{self.log.read_text()[-3000:]}")
            try:
                if value := ready():
                    return value
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass  # not listening yet
            time.sleep(0.5)
        pytest.fail(f"tensorboard not ready after {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def tensorboard(run_dir, tmp_path_factory):
    server = TensorBoard(run_dir, tmp_path_factory.mktemp("tensorboard_log") / "server.log")
    try:
        # Ready once the last thing written (the test metrics) has been read in.
        server.wait_for(lambda: "test/acc" in server.json("/data/plugin/scalars/tags")
                        .get(RUN, {}))
        yield server
    finally:
        server.stop()


def scalars(tensorboard: TensorBoard, tag: str) -> dict[int, float]:
    """``{step: value}`` of one scalar tag, via /data/plugin/scalars/scalars."""
    rows = tensorboard.json("/data/plugin/scalars/scalars", run=RUN, tag=tag)
    return {step: value for _wall_time, step, value in rows}


def test_the_run_folder_is_one_run(tensorboard):
    assert tensorboard.json("/data/runs") == [RUN]


def test_training_validation_and_test_metrics(tensorboard):
    tags = tensorboard.json("/data/plugin/scalars/tags")[RUN]
    for tag in ("train/loss", "train/lr", "train/acc", "val/loss", "val/acc", "val/f1",
                "test/loss", "test/acc", "test/f1"):
        assert tag in tags
    assert len(scalars(tensorboard, "val/acc")) == EPOCHS
    (test_accuracy,) = scalars(tensorboard, "test/acc").values()
    assert test_accuracy > 0.8


def test_gradient_flow_of_every_layer(tensorboard):
    tags = tensorboard.json("/data/plugin/scalars/tags")[RUN]
    logged = list(range(0, EPOCHS * STEPS_PER_EPOCH, FLOW_EVERY))
    for layer in LAYERS:
        for kind in ("grad_norm", "weight_norm", "update_ratio"):
            values = scalars(tensorboard, f"grad_flow/{kind}/{layer}")
            assert sorted(values) == logged
            assert all(value > 0 for value in values.values())
    ratios = scalars(tensorboard, "grad_flow/update_ratio/model.head.dense0.linear")
    assert all(1e-6 < ratio < 1 for ratio in ratios.values())
    for relu in ("model.head.dense0.activation", "model.head.dense1.activation"):
        dead = scalars(tensorboard, f"grad_flow/dead_relu/{relu}")
        assert sorted(dead) == logged and all(0 <= value <= 1 for value in dead.values())
    assert not [tag for tag in tags if tag.startswith("grad_flow/dead_relu/model.head.dense0.l")]


def test_gradient_checks_found_the_rules_right(tensorboard):
    tags = tensorboard.json("/data/plugin/scalars/tags")[RUN]
    checked = list(range(0, EPOCHS * STEPS_PER_EPOCH, CHECK_EVERY))
    worst = scalars(tensorboard, "grad_check/worst")
    assert sorted(worst) == checked
    assert all(value < 1e-9 for value in worst.values())
    per_parameter = [tag for tag in tags if tag.startswith("grad_check/max_rel_err/")]
    assert len(per_parameter) == 2 * len(LAYERS)  # weight and bias of each
    assert "grad_check/max_rel_err/model.head.classifier.weight" in per_parameter


def test_weight_and_gradient_histograms(tensorboard):
    tags = tensorboard.json("/data/plugin/histograms/tags")[RUN]
    for layer in LAYERS:
        for kind in ("weights", "grads"):
            assert f"{kind}/{layer}.weight" in tags and f"{kind}/{layer}.bias" in tags
    rows = tensorboard.json("/data/plugin/histograms/histograms", run=RUN,
                            tag="grads/model.head.classifier.weight")
    assert [step for _wall_time, step, _buckets in rows] == list(
        range(0, EPOCHS * STEPS_PER_EPOCH, HISTOGRAMS_EVERY))


@pytest.mark.parametrize("tag", ["pictures/confusion_matrix", "pictures/worst_examples"])
def test_pictures_of_each_validation_epoch(tensorboard, tag):
    assert tag in tensorboard.json("/data/plugin/images/tags")[RUN]
    images = tensorboard.json("/data/plugin/images/images", run=RUN, tag=tag, sample=0)
    assert [image["step"] for image in images] == [STEPS_PER_EPOCH * (epoch + 1)
                                                   for epoch in range(EPOCHS)]
    png = tensorboard.get("/data/plugin/images/individualImage?" + images[-1]["query"])
    assert png.startswith(b"\x89PNG") and 2_000 < len(png) < 150_000
