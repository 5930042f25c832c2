"""Character-level text for language models: a vocabulary, a 90/10 split, random windows.

The text's vocabulary is its sorted unique characters; a character's id is its place there.
The first ``1 - val_fraction`` of the text trains, the rest validates, as nanoGPT splits it.
nanoGPT has no test split: ``test`` draws other windows from the same validation text.

A batch is ``batch_size`` windows of ``block_size + 1`` characters, each starting at a random
place in its split: ``x = window[:-1]``, ``y = window[1:]`` (int64, ``(batch_size,
block_size)``), so the target at each position is the next character. Batches are indexed,
not streamed: batch ``i`` of a split comes from a generator seeded by ``(seed, split, i)``
alone. Training serves ``train_batches`` batches per epoch, epoch ``e`` taking batches
``e·train_batches …``, so a run repeats under its seed and a run resumed from a checkpoint at
an epoch's end (where this project writes them) draws the very batches the unbroken run does.
Validation draws the same ``eval_batches`` batches every time, from ``split_seed``.

The vocabulary travels with a checkpoint: Lightning stores the datamodule's
:meth:`~TextDataModule.state_dict` (``{"vocab": [...], ...}``, plain lists, readable with
``torch.load(weights_only=True)``) under the class's name, and :func:`vocab_from_checkpoint`
reads it back, or a ``vocab`` hyperparameter, with no text at hand.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from .base import DataError
from .batches import _rank_and_world
from .corpora import corpus

#: Each split's stream of random numbers, mixed into the seed of its batches.
STREAMS = {"train": 0, "val": 1, "test": 2}


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


class CharVocab:
    """The characters of a text, sorted (by code point); a character's id is its index."""

    def __init__(self, chars: Sequence[str]):
        chars = list(chars)
        if not chars or any(not isinstance(c, str) or len(c) != 1 for c in chars) or \
                chars != sorted(set(chars)):
            raise ValueError("CharVocab: expected a non-empty sorted list of distinct single "
                             f"characters, got {chars[:10]!r}{'…' if len(chars) > 10 else ''}")
        self.chars = chars
        self._points = _codepoints("".join(chars))

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        return cls([chr(c) for c in np.unique(_codepoints(text))])

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharVocab) and self.chars == other.chars

    def __repr__(self) -> str:
        return f"CharVocab({len(self)} characters: {''.join(self.chars)!r})"

    def encode(self, text: str) -> Tensor:
        """The ids of ``text``'s characters, int64 of shape ``(len(text),)``."""
        points = _codepoints(text)
        ids = np.searchsorted(self._points, points).clip(max=len(self) - 1)
        unknown = np.flatnonzero(self._points[ids] != points)
        if len(unknown):
            at = int(unknown[0])
            raise ValueError(f"CharVocab.encode: {text[at]!r} (at {at}) is not one of the "
                             f"vocabulary's {len(self)} characters")
        return torch.from_numpy(ids.astype(np.int64))

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        """The text that ``ids`` (a 1-D tensor or sequence of ids) spell."""
        ids = torch.as_tensor(ids).flatten().tolist()
        if bad := [i for i in ids if not 0 <= i < len(self)]:
            raise ValueError(f"CharVocab.decode: id {bad[0]} is outside [0, {len(self)})")
        return "".join(self.chars[i] for i in ids)


def vocab_from_checkpoint(checkpoint: Mapping[str, Any] | str | Path) -> CharVocab:
    """The vocabulary a checkpoint's model was trained with: from the text datamodule's
    state that Lightning saved in it, else from a ``vocab`` hyperparameter."""
    if not isinstance(checkpoint, Mapping):
        checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=True)
    for name in (cls.__qualname__ for cls in (TextDataModule, *TextDataModule.__subclasses__())):
        if isinstance(checkpoint.get(name), Mapping) and "vocab" in checkpoint[name]:
            return CharVocab(checkpoint[name]["vocab"])
    hparams = checkpoint.get("hyper_parameters") or {}
    if "vocab" in hparams:
        return CharVocab(hparams["vocab"])
    raise ValueError("vocab_from_checkpoint: no vocabulary in this checkpoint (neither a text "
                     "datamodule's state nor a 'vocab' hyperparameter)")


def _generator(seed: int, stream: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(((seed * 1_000_003 + stream) * 1_000_000_007 + index)
                                         % 2**64)


class WindowBatches(Dataset):
    """``batches[i]``: batch ``i`` of ``data`` (a split's ids), drawn from ``(seed, stream, i)``:
    ``batch_size`` windows starting uniformly in ``[0, len(data) - block_size)``."""

    def __init__(self, data: Tensor, block_size: int, batch_size: int, seed: int, stream: int):
        self.data, self.block_size, self.batch_size = data, block_size, batch_size
        self.seed, self.stream = seed, stream
        self.offsets = torch.arange(block_size + 1)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        starts = torch.randint(len(self.data) - self.block_size, (self.batch_size,),
                               generator=_generator(self.seed, self.stream, index))
        windows = self.data[starts[:, None] + self.offsets].long()
        return windows[:, :-1], windows[:, 1:]


class StepSampler(Sampler[int]):
    """The batch indices of one epoch: ``count`` of them from ``epoch · count`` on, each spread
    over the ranks (``index · world + rank``), so each rank draws batches of its own.

    Lightning calls :meth:`set_epoch` before each epoch (a resumed run too); used outside it,
    each pass takes the next epoch."""

    def __init__(self, count: int):
        self.count = count
        self.epoch = 0
        self._epoch_was_set = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._epoch_was_set = True

    def __iter__(self) -> Iterator[int]:
        # A generator: the epoch is read at the first batch, after Lightning's set_epoch, even
        # where Lightning made the iterator before it (when it resumes from a checkpoint).
        rank, world = _rank_and_world()
        first = self.epoch * self.count
        if not self._epoch_was_set:
            self.epoch += 1
        for k in range(self.count):
            yield (first + k) * world + rank

    def __len__(self) -> int:
        return self.count


class TextDataModule(L.LightningDataModule):
    """Any UTF-8 text file ``path``, read (and checked) when the module is built, so that
    ``input_shape = (block_size,)`` and ``num_classes`` (the vocabulary's size) size a model
    before :meth:`setup`, and a bad file is refused before training starts.

    ``text`` gives the text itself instead of a file (subclasses: a shipped corpus).
    """

    name = "text"
    #: What it teaches: the recipe that trains on it (trainer.language_model).
    task = "next_token"
    #: The config key that refusals of the text name: the one to change to fix it.
    data_key = "data.path"

    def __init__(self, *, path: str | Path | None = None, text: str | None = None,
                 block_size: int = 64, batch_size: int = 12, eval_batches: int = 20,
                 train_batches: int = 250, val_fraction: float = 0.1, seed: int = 0,
                 split_seed: int | None = 0):
        super().__init__()
        self.block_size, self.batch_size = block_size, batch_size
        self.eval_batches, self.train_batches = eval_batches, train_batches
        self.val_fraction = val_fraction
        self.seed = seed
        self.split_seed = seed if split_seed is None else split_seed
        if text is None:
            if path is None or not str(path).strip():
                raise DataError(self.data_key, "no file given: add data.path=FILE (any UTF-8 "
                                "text)")
            self.path: Path | None = Path(path).expanduser()
            text = read_text(self.path)
        else:
            self.path = None
        self.vocab = CharVocab.from_text(text)
        ids = self.vocab.encode(text).to(torch.int32)  # half the memory; windows are int64
        cut = int(len(ids) * (1 - val_fraction))
        self.train, self.val = ids[:cut], ids[cut:]
        self.check_length(len(ids))
        self.input_shape = (block_size,)
        self.num_classes = len(self.vocab)

    @property
    def source(self) -> str:
        """The text as refusals name it: its file, or the corpus's name."""
        return str(self.path) if self.path is not None else self.name

    def check_length(self, count: int) -> None:
        """Refuse a text whose train or val split is too short to hold one window."""
        need = self.block_size + 1
        if min(len(self.train), len(self.val)) >= need:
            return
        def fits(count: int) -> bool:
            cut = int(count * (1 - self.val_fraction))
            return min(cut, count - cut) >= need

        least = math.ceil(need / min(self.val_fraction, 1 - self.val_fraction))
        while fits(least - 1):  # the val split grows with the text: find its shortest
            least -= 1
        while not fits(least):
            least += 1
        split, size = ("val", len(self.val)) if len(self.val) < need else \
            ("train", len(self.train))
        key = self.data_key if self.path is not None else "data.block_size"
        raise DataError(key, f"{self.source}: {count} characters leave {size} for the "
                        f"{split} split, fewer than block_size + 1 = {need}: give a text of at "
                        f"least {least} characters, or a smaller data.block_size")

    # -- what a checkpoint keeps ---------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Plain lists and numbers: the vocabulary a model trained on this text reads."""
        return {"vocab": list(self.vocab.chars), "block_size": self.block_size}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Refuse to resume on a text whose vocabulary differs from the checkpoint's: the same
        ids would stand for other characters."""
        saved = state_dict.get("vocab")
        if saved is not None and list(saved) != self.vocab.chars:
            extra = sorted(set(self.vocab.chars) - set(saved))
            missing = sorted(set(saved) - set(self.vocab.chars))
            raise DataError(self.data_key, f"{self.source}: its vocabulary ({len(self.vocab)} "
                            f"characters) is not the checkpoint's ({len(saved)}): new "
                            f"{''.join(extra)!r}, absent {''.join(missing)!r}; resume on the "
                            "text the checkpoint was trained on")

    # -- loaders ---------------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        """Nothing to do: the text was read, encoded and split when the module was built."""

    def _loader(self, split: str, sampler: Sampler[int] | Sequence[int]) -> DataLoader:
        data = self.train if split == "train" else self.val
        seed = self.seed if split == "train" else self.split_seed
        batches = WindowBatches(data, self.block_size, self.batch_size, seed, STREAMS[split])
        pin = torch.cuda.is_available() and self.trainer is not None and \
            self.trainer.strategy.root_device.type == "cuda"
        # batch_size=None: each item is already a batch. Its own generator, so that starting
        # an iterator draws nothing from torch's global RNG.
        return DataLoader(batches, batch_size=None, sampler=sampler, num_workers=0,
                          pin_memory=pin, generator=torch.Generator().manual_seed(seed))

    def _eval_indices(self) -> list[int]:
        rank, world = _rank_and_world()
        return list(range(rank, self.eval_batches, world))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", StepSampler(self.train_batches))

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self._eval_indices())

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self._eval_indices())

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    @property
    def class_names(self) -> list[str]:
        return [repr(c)[1:-1] if c != " " else "␣" for c in self.vocab.chars]

    def describe(self) -> str:
        return (f"{self.name}: {len(self.train) + len(self.val):,} characters, vocabulary "
                f"{len(self.vocab)}; train {len(self.train):,}, val {len(self.val):,} "
                f"characters; windows of {self.block_size} + 1")


class ShakespeareCharDataModule(TextDataModule):
    """The shipped Shakespeare text (:func:`trainer.data.corpus`), as nanoGPT's
    ``shakespeare_char``: about 1.1 million characters, 65 distinct."""

    name = "shakespeare_char"
    data_key = "data"

    def __init__(self, **options):
        super().__init__(text=corpus("shakespeare"), **options)


def read_text(path: Path) -> str:
    """The UTF-8 text in ``path`` (newlines as ``\\n``), or a refusal naming the problem."""
    if not path.exists():
        raise DataError("data.path", f"{path}: no such file")
    if not path.is_file():
        raise DataError("data.path", f"{path}: not a file")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError("data.path", f"{path}: cannot open it ({error.strerror})") from None
    if not raw:
        raise DataError("data.path", f"{path}: the file is empty")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError("data.path", f"{path}: not UTF-8 text (byte 0x{raw[error.start]:02x} "
                        f"at offset {error.start}): save it as UTF-8") from None
    return text.replace("\r\n", "\n")


__all__ = ["CharVocab", "ShakespeareCharDataModule", "StepSampler", "TextDataModule",
           "WindowBatches", "read_text", "vocab_from_checkpoint"]
