"""Character-level text: the shipped Shakespeare, the vocabulary, the 90/10 split, windows drawn
from (seed, batch index), fixed validation batches, resuming, and one line for each bad file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer import __main__ as cli
from trainer import data, models
from trainer.data import CharVocab, DataError, TextDataModule, corpus, vocab_from_checkpoint
from trainer.data.corpora import build_shakespeare

REPO = Path(__file__).resolve().parents[2]
#: No character repeats its neighbourhood: a window's text is found in one place only.
PROSE = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(200))


def text_module(tmp_path: Path, text: str = PROSE, seed: int = 0, **options) -> TextDataModule:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "mine.txt"
    path.write_text(text, encoding="utf-8")
    return data.build({"name": "text", "path": str(path), **options}, seed=seed)


def batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


# -- the shipped text ----------------------------------------------------------------------------


def test_shakespeare_is_about_tiny_shakespeare_in_size_and_layout():
    text = corpus("shakespeare")
    assert 1_000_000 < len(text) < 1_200_000
    assert text.startswith("FIRST CITIZEN:\nBefore we proceed any further, hear me speak.\n\n")
    assert "gutenberg" not in text.lower() and "[" not in text and "ACT I" not in text
    vocab = CharVocab.from_text(text)
    assert 60 <= len(vocab) <= 70 and vocab.chars[:2] == ["\n", " "]
    assert set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") <= set(vocab.chars)
    speeches = text.split("\n\n")
    assert all(speech.split("\n", 1)[0].endswith(":") for speech in speeches[:-1])
    assert speeches[-1] == ""  # the text ends with a speech's blank line


def test_corpus_refuses_an_unknown_name():
    with pytest.raises(ValueError, match="unknown text 'homer'; shipped: shakespeare"):
        corpus("homer")


def test_the_build_script_keeps_speeches_and_drops_the_rest():
    play = ("THE TEMPEST\n\nPERSONS REPRESENTED.\n\nALONSO.\n\nACT 1\n\nSCENE 1\n\n"
            "[Enter a Master.]\n\nMASTER.\nBoatswain!  [A cry\nwithin]\n\n[Exit.]\n\n"
            "   Heigh, my _hearts_!\n2 KEEPER.\nWhat cheer? {Aside.}\n\nSCENE 2\n\nOrphan line.\n")
    assert build_shakespeare.speeches(play) == [
        ("MASTER", ["Boatswain!", "Heigh, my hearts!"]), ("SECOND KEEPER", ["What cheer?"])]


# -- the vocabulary ------------------------------------------------------------------------------


def test_vocabulary_is_the_sorted_characters_and_round_trips():
    vocab = CharVocab.from_text("hello, wörld\n")
    assert vocab.chars == sorted(set("hello, wörld\n"))
    ids = vocab.encode("wörld, hello")
    assert ids.dtype == torch.int64 and ids.tolist() == [vocab.chars.index(c) for c in
                                                         "wörld, hello"]
    assert vocab.decode(ids) == "wörld, hello" and vocab.decode(ids.tolist()) == "wörld, hello"
    assert CharVocab(list(vocab.chars)) == vocab


def test_vocabulary_refuses_what_it_cannot_spell():
    vocab = CharVocab.from_text("abc")
    with pytest.raises(ValueError, match=r"'z' \(at 2\) is not one of the vocabulary's 3"):
        vocab.encode("abz")
    with pytest.raises(ValueError, match=r"id 3 is outside \[0, 3\)"):
        vocab.decode([0, 3])
    with pytest.raises(ValueError, match="sorted list of distinct single characters"):
        CharVocab(["b", "a"])


def test_vocabulary_travels_in_the_state_dict_and_refuses_another_text(tmp_path):
    module = text_module(tmp_path)
    state = module.state_dict()
    assert state["vocab"] == module.vocab.chars and all(type(c) is str for c in state["vocab"])
    module.load_state_dict(state)  # same text: fine
    with pytest.raises(DataError) as refused:
        text_module(tmp_path, PROSE.upper()).load_state_dict(state)
    assert refused.value.key == "data.path" and "not the checkpoint's" in refused.value.problem
    assert vocab_from_checkpoint({"hyper_parameters": {"vocab": state["vocab"]}}) == module.vocab
    with pytest.raises(ValueError, match="no vocabulary in this checkpoint"):
        vocab_from_checkpoint({"state_dict": {}})


# -- splits and windows --------------------------------------------------------------------------


def test_first_ninety_percent_trains_and_the_rest_validates(tmp_path):
    module = text_module(tmp_path)
    cut = int(len(PROSE) * 0.9)
    assert module.vocab.decode(module.train) == PROSE[:cut]
    assert module.vocab.decode(module.val) == PROSE[cut:]
    assert module.input_shape == (64,) and module.num_classes == len(set(PROSE))
    model = models.build({"name": "mlp", "hidden": [8]}, module.input_shape, module.num_classes)
    assert model(torch.zeros(2, 64)).shape == (2, module.num_classes)


@settings(max_examples=25, deadline=None)
@given(length=st.integers(180, 600), block=st.integers(1, 16), batch=st.integers(1, 5),
       seed=st.integers(0, 2**31))
def test_windows_are_contiguous_and_y_is_x_shifted_by_one(tmp_path_factory, length, block,
                                                          batch, seed):
    text = PROSE[:length]
    module = text_module(tmp_path_factory.mktemp("w"), text, block_size=block, batch_size=batch,
                         train_batches=2, eval_batches=2, seed=seed)
    cut = int(length * 0.9)
    for loader, split in ((module.train_dataloader(), text[:cut]),
                          (module.val_dataloader(), text[cut:])):
        for x, y in loader:
            assert x.shape == y.shape == (batch, block) and x.dtype == y.dtype == torch.int64
            assert torch.equal(x[:, 1:], y[:, :-1])
            for row_x, row_y in zip(x, y):
                window = module.vocab.decode(torch.cat([row_x, row_y[-1:]]))
                assert window in split  # contiguous, and from its own split


def test_shakespeare_char_serves_batches_of_the_configured_size():
    module = data.build({"name": "shakespeare_char", "block_size": 32, "batch_size": 4,
                         "train_batches": 3}, seed=1)
    assert module.input_shape == (32,) and module.num_classes == 65
    x, y = next(iter(module.train_dataloader()))
    assert x.shape == (4, 32) and torch.equal(x[:, 1:], y[:, :-1])
    assert len(module.train_dataloader()) == 3 and len(module.val_dataloader()) == 20


# -- determinism ---------------------------------------------------------------------------------


def test_same_seed_same_batches_and_another_seed_others(tmp_path):
    def first_epoch(seed):
        module = text_module(tmp_path, seed=seed, block_size=16, train_batches=4)
        loader = module.train_dataloader()
        loader.sampler.set_epoch(0)
        return batches(loader)

    once, twice, other = first_epoch(7), first_epoch(7), first_epoch(8)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(once, twice))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(once, other))
    assert len({tuple(x.flatten().tolist()) for x, _ in once}) == 4  # no batch repeats


def test_each_epoch_draws_new_batches_that_follow_from_the_epoch_alone(tmp_path):
    module = text_module(tmp_path, block_size=16, train_batches=3)
    loader = module.train_dataloader()
    epochs = []
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        epochs.append(batches(loader))
    assert not torch.equal(epochs[0][0][0], epochs[1][0][0])
    fresh = text_module(tmp_path, block_size=16, train_batches=3).train_dataloader()
    fresh.sampler.set_epoch(2)  # a resumed run starts at its epoch
    assert all(torch.equal(a[0], b[0]) for a, b in zip(epochs[2], batches(fresh)))


def test_validation_batches_are_the_same_every_time_and_for_every_run_seed(tmp_path):
    module = text_module(tmp_path, block_size=16, eval_batches=5)
    first, again = batches(module.val_dataloader()), batches(module.val_dataloader())
    other_run = batches(text_module(tmp_path, block_size=16, eval_batches=5, seed=3)
                        .val_dataloader())
    assert len(first) == 5
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[0], c[0])
               for a, b, c in zip(first, again, other_run))
    test = batches(module.test_dataloader())  # other windows of the same (val) text
    assert len(test) == 5 and not torch.equal(test[0][0], first[0][0])


def test_under_ddp_each_rank_draws_batches_of_its_own(tmp_path, monkeypatch):
    import trainer.data.text as text

    module = text_module(tmp_path, block_size=16, train_batches=2, eval_batches=5)
    drawn = {}
    for rank in (0, 1):
        monkeypatch.setattr(text, "_rank_and_world", lambda rank=rank: (rank, 2))
        train = module.train_dataloader()
        train.sampler.set_epoch(1)
        assert list(train.sampler) == [2 * 2 + rank, 3 * 2 + rank]  # (epoch·2 + k)·world + rank
        drawn[rank] = batches(train)
        assert len(module.val_dataloader()) == (3, 2)[rank]  # 5 fixed batches, split by rank
    assert not torch.equal(drawn[0][0][0], drawn[1][0][0])


class Recorder(L.LightningModule):
    """A bigram model that notes every training batch it sees."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.logits = torch.nn.Embedding(vocab_size, vocab_size)
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen.append(x.clone())
        return torch.nn.functional.cross_entropy(self.logits(x).flatten(0, 1), y.flatten())

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", torch.nn.functional.cross_entropy(self.logits(x).flatten(0, 1),
                                                               y.flatten()))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(tmp_path: Path, epochs: int, ckpt_path: Path | None = None) -> Recorder:
    module = text_module(tmp_path, block_size=8, batch_size=2, train_batches=3, eval_batches=2)
    model = Recorder(module.num_classes)
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(tmp_path / "ckpt", save_last=True)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, callbacks=[
        checkpoints], enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, use_distributed_sampler=False)
    trainer.fit(model, datamodule=module, ckpt_path=ckpt_path, weights_only=True)
    return model


@pytest.mark.filterwarnings("ignore:The dirpath has changed")
def test_a_resumed_run_draws_the_batches_of_the_unbroken_run(tmp_path):
    unbroken = fit(tmp_path / "a", epochs=3).seen
    fit(tmp_path / "b", epochs=1)
    last = tmp_path / "b" / "ckpt" / "last.ckpt"
    resumed = fit(tmp_path / "c", epochs=3, ckpt_path=last).seen  # a module built anew
    assert len(unbroken) == 9 and len(resumed) == 6
    assert all(torch.equal(a, b) for a, b in zip(unbroken[3:], resumed))
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["TextDataModule"]["vocab"] == sorted(set(PROSE))
    assert vocab_from_checkpoint(last).decode([0, 1]) == "".join(sorted(set(PROSE))[:2])


# -- bad files: one line naming data.path, exit status 2 -----------------------------------------


BAD_FILES = {  # name: (bytes, or None for no file; words the refusal holds)
    "missing": (None, "no such file"),
    "empty": (b"", "the file is empty"),
    "latin1": ("Ça va, très bien.\n".encode("latin-1") * 20, "not UTF-8 text (byte 0xc7 at "
               "offset 0): save it as UTF-8"),
    "short": (b"To be, or not to be: that is the question.\n" * 10, "fewer than block_size + 1 "
              "= 65: give a text of at least 641 characters, or a smaller data.block_size"),
}


def bad_file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.txt"
    if BAD_FILES[name][0] is not None:
        path.write_bytes(BAD_FILES[name][0])
    return path


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_files_fail_on_the_command_line_with_one_line(tmp_path, capsys, name):
    path = bad_file(tmp_path, name)
    with pytest.raises(SystemExit) as exit:
        cli.main(["data=text", f"data.path={path}", f"hydra.run.dir={tmp_path / 'run'}"])
    assert exit.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: data.path: {path}: ")
    assert BAD_FILES[name][1] in lines[0]
    assert not (tmp_path / "run").exists()  # refused before any training


def test_the_shortest_text_that_fits_is_the_one_the_refusal_names(tmp_path):
    text_module(tmp_path, PROSE[:641])  # val: 641 - int(576.9) = 65 characters, one window
    with pytest.raises(DataError, match="leave 64 for the val split"):
        text_module(tmp_path, PROSE[:640])
    with pytest.raises(DataError) as refused:
        data.build({"name": "shakespeare_char", "block_size": 200_000})
    assert refused.value.key == "data.block_size"


def test_a_bad_file_fails_fast_through_python_dash_m_trainer(tmp_path):
    path = bad_file(tmp_path, "latin1")
    result = subprocess.run([sys.executable, "-m", "trainer", "data=text", f"data.path={path}"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HYDRA_FULL_ERROR": "0"})
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: data.path: {path}: {BAD_FILES['latin1'][1]}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latin1.txt"]  # no run folder


# -- packaging -----------------------------------------------------------------------------------


def test_the_shipped_text_goes_into_the_wheel():
    """Hatch puts every file under ``src/trainer`` that git does not ignore into the wheel
    (tests/cli/test_cli.py builds one and looks); the .gz must stay tracked and not ignored."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    wheel = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
        "targets"]["wheel"]
    assert wheel["packages"] == ["src/trainer"] and "only-include" not in wheel
    assert not wheel.get("exclude")
    shipped = "src/trainer/data/corpora/shakespeare.txt.gz"
    ignored = subprocess.run(["git", "check-ignore", "-q", shipped], cwd=REPO)
    assert ignored.returncode == 1, f"{shipped} is git-ignored: hatch would leave it out"
    assert (REPO / shipped).stat().st_size < 1_000_000
