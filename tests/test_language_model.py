"""The language-model recipe: cook (the GPT's body), taste (next-token cross-entropy through the
tied head), adjust; its metrics, its sample, and a short run from the command line."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer import testing
from trainer.language_model import BITS_PER_NAT, LanguageModelRecipe

VOCAB = sorted([chr(c) for c in range(ord("a"), ord("a") + 20)] + [" ", "\n", ":"])
TINY = {"name": "gpt", "n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 8,
        "dropout": 0.0, "bias": False}
ADAMW = {"name": "adamw", "lr": 1e-3, "betas": [0.9, 0.99], "weight_decay": 0.1,
         "grad_clip": 1.0}
#: A short run: a tiny GPT, 2 epochs of 15 steps at a high rate, no warmup.
SHORT_RUN = ("experiment=shakespeare_char", "trainer.max_epochs=2", "data.train_batches=15",
             "data.eval_batches=2", "model.n_layer=1", "model.n_embd=32", "model.n_head=2",
             "scheduler.warmup_steps=0", "optimizer.lr=0.01", "sample.max_new_tokens=40",
             "callbacks.gradient_check.every_n_steps=10", "seed=3")


def tiny_recipe(**sample) -> LanguageModelRecipe:
    torch.manual_seed(0)
    return LanguageModelRecipe(TINY, ADAMW, {"name": "none"}, input_shape=[8],
                               num_classes=len(VOCAB), vocab=VOCAB, sample=sample or None)


def batch(n=3, t=8):
    generator = torch.Generator().manual_seed(1)
    window = torch.randint(0, len(VOCAB), (n, t + 1), generator=generator)
    return window[:, :-1], window[:, 1:]


def test_taste_is_the_cross_entropy_of_the_logits_at_every_position():
    recipe = tiny_recipe()
    x, y = batch()
    fused = recipe.taste(recipe.cook(x), y, "train")
    logits = recipe(x)
    assert logits.shape == (3, 8, len(VOCAB))
    plain = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
    torch.testing.assert_close(fused, plain)
    torch.testing.assert_close(recipe.loss(logits, y), plain)


def test_the_gradient_of_the_fused_taste_equals_autograds_through_torch_nn():
    from trainer.nn import to_torch

    recipe = tiny_recipe()
    x, y = batch()
    recipe.taste(recipe.cook(x), y, "train").backward()
    native = to_torch(recipe.model)
    torch.nn.functional.cross_entropy(native(x).flatten(0, 1), y.flatten()).backward()
    for (name, ours), theirs in zip(recipe.model.named_parameters(), native.parameters(),
                                    strict=True):
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_parameter_groups_decay_the_matmul_weights_only():
    recipe = tiny_recipe()
    optimizer = recipe.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    names = {name for name, p in recipe.model.named_parameters() if id(p) in decayed}
    assert names and all(name.endswith("weight") and ".ln" not in name and "wte" not in name
                         and "wpe" not in name for name in names), names
    counted = sum(len(g["params"]) for g in optimizer.param_groups)
    assert counted == len(list(recipe.model.parameters()))  # the tied head once


def test_the_sample_repeats_under_its_seed_and_starts_with_the_prompt():
    recipe = tiny_recipe(prompt="ab:", max_new_tokens=12, temperature=1.0, top_k=5)
    first, again, other = (recipe.sample_text(seed=s) for s in (0, 0, 1))
    assert first == again and first.startswith("ab:") and len(first) == 3 + 12
    assert set(first) <= set(VOCAB)
    assert other != first  # a 12-character draw over 5 choices: equal by chance ~1e-8
    assert recipe.model.training  # sampling put it back in training mode


def trainer_cli(*args: str, cwd: Path, module: str = "trainer", timeout: float = 600):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lm")
    result = trainer_cli(*SHORT_RUN, f"hydra.run.dir={folder / 'run'}", cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "run"


def test_a_short_run_from_the_command_line_lowers_the_loss(short_run):
    metrics = json.loads((short_run / "metrics.json").read_text())
    test = metrics["test"]
    uniform = math.log(65)  # the loss of a model that knows nothing: ln |vocabulary|
    assert test["test/loss"] < uniform - 0.6, test
    assert test["test/bpc"] == pytest.approx(test["test/loss"] * BITS_PER_NAT, rel=1e-5)
    assert test["test/ppl"] == pytest.approx(math.exp(test["test/loss"]), rel=1e-5)
    assert metrics["global_step"] == 30 and metrics["best"]["val/loss"] < uniform


def test_the_run_writes_a_sample_to_tensorboards_text_tab(short_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(short_run), size_guidance={"tensors": 0})
    events.Reload()
    assert "samples/text_summary" in events.Tags()["tensors"]
    texts = [e.tensor_proto.string_val[0].decode() for e in events.Tensors("samples/text_summary")]
    assert len(texts) == 2 and all("ROMEO:" in t for t in texts)  # one per validation


def test_sampling_a_checkpoint_from_the_command_line_repeats_under_a_seed(short_run):
    ckpt = short_run / "checkpoints" / "best.ckpt"
    args = (f"ckpt_path={ckpt}", "prompt=ROMEO:", "max_new_tokens=60", "temperature=0.8",
            "top_k=20", "seed=5")
    first = trainer_cli(*args, cwd=short_run, module="trainer.sample", timeout=120)
    again = trainer_cli(*args, cwd=short_run, module="trainer.sample", timeout=120)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout == again.stdout and first.stdout.startswith("ROMEO:")
    assert len(first.stdout.rstrip("\n")) >= len("ROMEO:") + 60 - 1


@pytest.mark.parametrize("args, words", [
    (("model=gpt",), "gpt takes token sequences (T,); the data gives (1, 8, 8)"),
    (("data=shakespeare_char",), "a text data set trains a language model (model=gpt)"),
])
def test_a_model_that_does_not_fit_the_data_is_refused_in_one_line(tmp_path, args, words):
    result = trainer_cli(*args, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: model: ") and words in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_explicit_rules_train_every_parameter():
    recipe = tiny_recipe()
    x, y = batch()
    loss = recipe.taste(recipe.cook(x), y, "train")
    assert not testing.graph_node_counts(loss)["builtin"]
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in recipe.model.parameters())
