"""The IDX reader: raw and gzipped files, its refusals, and the real Fashion-MNIST files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from trainer.data import DataError, FashionMNISTDataModule, MNISTDataModule, idx
from trainer.data.idx import IDXError, read_idx, write_idx

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_reads_what_it_writes(tmp_path, name):
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 4), dtype=np.uint8)
    write_idx(tmp_path / name, images)
    loaded = read_idx(tmp_path / name)
    assert loaded.dtype == np.uint8 and loaded.shape == (5, 3, 4)
    assert np.array_equal(loaded, images)


def test_reads_big_endian_types(tmp_path):
    values = np.array([[1.5, -2.0], [3.25, 1e6]], dtype=np.float32)
    write_idx(tmp_path / "floats.gz", values)
    assert np.array_equal(read_idx(tmp_path / "floats.gz"), values)
    raw = struct.pack(">BBBBI", 0, 0, 0x0C, 1, 2) + struct.pack(">ii", -7, 70000)
    (tmp_path / "ints").write_bytes(raw)
    assert read_idx(tmp_path / "ints").tolist() == [-7, 70000]


def test_reads_a_hand_made_label_file(tmp_path):
    # The layout of train-labels-idx1-ubyte: magic 0x00000801, count, then one byte per label.
    (tmp_path / "labels").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 9]))
    assert read_idx(tmp_path / "labels").tolist() == [7, 2, 9]


@pytest.mark.parametrize("payload, words", [
    (bytes([0, 0, 8]), "truncated"),
    (bytes([1, 0, 8, 1, 0, 0, 0, 1, 5]), "bad magic"),
    (bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 5]), "unknown IDX type"),
    (bytes([0, 0, 8, 3, 0, 0, 0, 2]), "truncated header"),
    (bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3]), "needs 6 bytes of data, found 3"),
    (bytes([0, 0, 8, 1, 0, 0, 0, 1, 5, 6]), "unexpected bytes"),
])
def test_refuses_broken_files(tmp_path, payload, words):
    for name, writer in (("raw", Path.write_bytes),
                         ("zipped.gz", lambda p, b: p.write_bytes(gzip.compress(b)))):
        writer(tmp_path / name, payload)
        with pytest.raises(IDXError, match=words):
            read_idx(tmp_path / name)


def test_refuses_a_gzip_stream_cut_short(tmp_path):
    whole = gzip.compress(struct.pack(">BBBBI", 0, 0, 8, 1, 1000) + bytes(1000))
    (tmp_path / "cut.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(IDXError, match="gzip"):
        read_idx(tmp_path / "cut.gz")


def fake_fashion(root: Path, train: int = 30, test: int = 10, gz: bool = True) -> None:
    rng = np.random.default_rng(1)
    suffix = ".gz" if gz else ""
    for split, count in (("train", train), ("t10k", test)):
        write_idx(root / f"{split}-images-idx3-ubyte{suffix}",
                  rng.integers(0, 256, (count, 28, 28), dtype=np.uint8))
        write_idx(root / f"{split}-labels-idx1-ubyte{suffix}",
                  (np.arange(count) % 10).astype(np.uint8))


@pytest.mark.parametrize("gz", [True, False])
def test_datamodule_reads_idx_files_from_root(tmp_path, gz):
    fake_fashion(tmp_path, gz=gz)
    datamodule = FashionMNISTDataModule(root=tmp_path, val_size=5, batch_size=4)
    datamodule.setup()
    assert len(datamodule.train[0]) == 25 and len(datamodule.val[0]) == 5
    assert len(datamodule.test[0]) == 10
    x, y = next(iter(datamodule.train_dataloader()))
    assert x.shape == (4, 1, 28, 28) and y.dtype.is_floating_point is False
    assert abs(float(datamodule.train[0].mean())) < 1e-4  # normalized with train statistics


def test_missing_files_say_how_to_get_them_and_never_download(tmp_path, monkeypatch):
    monkeypatch.setattr(idx.urllib.request, "urlopen",
                        lambda *a, **k: pytest.fail("must not download without data.download"))
    with pytest.raises(DataError) as caught:
        FashionMNISTDataModule(root=tmp_path).setup()
    message = str(caught.value)
    assert caught.value.key == "data.root"
    assert "apt-get install dataset-fashion-mnist" in message
    assert "dpkg -L dataset-fashion-mnist" in message
    assert "data.download=true" in message
    assert "train-images-idx3-ubyte" in message
    with pytest.raises(DataError, match="data.download=true"):
        MNISTDataModule(root=tmp_path).setup()


def test_a_damaged_file_is_a_data_error_naming_it(tmp_path):
    fake_fashion(tmp_path, gz=False)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte: truncated"):
        FashionMNISTDataModule(root=tmp_path).setup()


def test_download_writes_checked_files_only_when_asked(tmp_path, monkeypatch):
    served = {}

    class Response:
        def __init__(self, payload):
            self.payload = payload

        def read(self, size=-1):
            chunk, self.payload = self.payload, b""
            return chunk

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    source = tmp_path / "source"
    source.mkdir()
    fake_fashion(source)
    for path in source.iterdir():
        served[path.name] = path.read_bytes()
    monkeypatch.setattr(idx.urllib.request, "urlopen",
                        lambda url, timeout: Response(served[url.rsplit("/", 1)[1]]))
    target = tmp_path / "target"
    datamodule = FashionMNISTDataModule(root=target, download=True, val_size=5)
    datamodule.setup()
    assert len(datamodule.test[0]) == 10
    assert sorted(p.name for p in target.iterdir()) == sorted(served)


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not "
                    "installed (/usr/share/datasets/fashion-mnist missing)")
def test_reads_the_real_fashion_mnist_files():
    images = read_idx(FASHION / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))
    assert read_idx(FASHION / "train-labels-idx1-ubyte.gz").shape == (60000,)
    assert FashionMNISTDataModule.default_root() == FASHION
