"""MNIST and Fashion-MNIST from their IDX files, read by a small checked reader.

IDX layout (big-endian): two zero bytes, a type code, the number of dims ``n``; then ``n``
4-byte sizes; then the values, ``prod(sizes)`` of them. Files may be gzipped.
"""

from __future__ import annotations

import gzip
import shutil
import struct
import sys
import urllib.request
from pathlib import Path

import numpy as np

from .base import DataError, TensorDataModule, as_tensors


class IDXError(ValueError):
    """An IDX file that is not one, or is cut short."""


#: IDX type code -> NumPy dtype (big-endian where it matters).
IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == _GZIP_MAGIC
    if not gzipped:
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as unzipped:
            return unzipped.read()
    except (EOFError, OSError, gzip.BadGzipFile) as error:
        raise IDXError(f"{path}: the gzip stream is damaged or cut short ({error})") from error


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (raw or gzipped) into an array of its declared type and shape."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IDXError(f"{path}: truncated: {len(data)} bytes, shorter than the 4-byte magic")
    zero_a, zero_b, type_code, ndim = data[:4]
    if zero_a or zero_b:
        raise IDXError(f"{path}: bad magic {data[:4].hex()}: an IDX file starts with two zero "
                       "bytes")
    if type_code not in IDX_DTYPES:
        raise IDXError(f"{path}: unknown IDX type code 0x{type_code:02x}")
    if ndim == 0:
        raise IDXError(f"{path}: bad magic: zero dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXError(f"{path}: truncated header: {ndim} dims need {header} bytes, "
                       f"found {len(data)}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_DTYPES[type_code]
    count = int(np.prod(dims, dtype=np.int64))
    expected, found = count * dtype.itemsize, len(data) - header
    if found < expected:
        raise IDXError(f"{path}: truncated: shape {dims} needs {expected} bytes of data, "
                       f"found {found}")
    if found > expected:
        raise IDXError(f"{path}: {found - expected} unexpected bytes after the data of shape "
                       f"{dims}")
    return np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzipped when the name ends in ``.gz``)."""
    codes = {dtype: code for code, dtype in IDX_DTYPES.items()}
    dtype = np.dtype(array.dtype).newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if dtype not in codes:
        raise IDXError(f"write_idx: no IDX type for dtype {array.dtype}")
    payload = struct.pack(f">BBBB{array.ndim}I", 0, 0, codes[dtype], array.ndim, *array.shape)
    payload += np.ascontiguousarray(array, dtype=dtype).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as out:
        out.write(payload)


SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def find_idx(root: Path, stem: str) -> Path | None:
    """``root/stem`` or ``root/stem.gz``, also spelled ``stem.idx3-ubyte`` by some mirrors."""
    variants = {stem, stem.replace("-idx", ".idx")}
    for name in variants:
        for suffix in ("", ".gz"):
            if (candidate := root / f"{name}{suffix}").is_file():
                return candidate
    return None


class IDXDataModule(TensorDataModule):
    """Images ``(1, 28, 28)`` in 10 classes from the four standard IDX files under ``root``.

    ``root=None`` picks :attr:`system_root` when it exists, else ``data/<name>``. Missing files
    are fetched from :attr:`mirror` only with ``download=True``.
    """

    input_shape = (1, 28, 28)
    num_classes = 10
    mirror: str = ""
    system_root: Path | None = None
    how_to_get: str = ""

    def __init__(self, *, root: str | Path | None = None, download: bool = False,
                 val_size: int = 5000, val_fraction: float = 0.0, **common):
        chosen = Path(root) if root is not None else self.default_root()
        super().__init__(root=chosen, val_fraction=val_fraction, **common)
        self.download = download
        self.val_size = val_size

    @classmethod
    def default_root(cls) -> Path:
        if cls.system_root is not None and cls.system_root.is_dir():
            return cls.system_root
        return Path("data") / cls.name

    def missing_files(self) -> list[str]:
        return [stem for pair in SPLIT_FILES.values() for stem in pair
                if find_idx(self.root, stem) is None]

    def prepare_data(self) -> None:
        missing = self.missing_files()
        if not missing:
            return
        if not self.download:
            raise DataError("data.root", f"{self.name}: no {', '.join(missing)} (or .gz) in "
                            f"{self.root}. {self.how_to_get} Or add data.download=true to fetch "
                            f"them from {self.mirror} into data.root.")
        self.root.mkdir(parents=True, exist_ok=True)
        for stem in missing:
            fetch(f"{self.mirror}{stem}.gz", self.root / f"{stem}.gz")

    def load(self):
        self.prepare_data()
        splits = []
        for images_stem, labels_stem in SPLIT_FILES.values():
            try:
                images = read_idx(find_idx(self.root, images_stem))
                labels = read_idx(find_idx(self.root, labels_stem))
            except IDXError as error:
                raise DataError("data.root", f"{self.name}: {error}") from error
            if images.ndim != 3 or images.shape[1:] != self.input_shape[1:]:
                raise DataError("data.root", f"{self.name}: {images_stem} holds images of shape "
                                f"{images.shape[1:]}, expected {self.input_shape[1:]}")
            if labels.shape != images.shape[:1]:
                raise DataError("data.root", f"{self.name}: {len(labels)} labels for "
                                f"{len(images)} images")
            splits.append(as_tensors(images[:, None].astype(np.float32) / 255.0, labels))
        (x_train, y_train), test = splits
        # A fixed-size validation split (the last val_size after a seeded shuffle).
        self.val_fraction = min(self.val_size / max(len(x_train), 1), 0.5)  # 0: caught later
        return (x_train, y_train), test


def fetch(url: str, target: Path) -> None:
    """Download ``url`` to ``target`` (through a temporary name), then check it reads as IDX."""
    print(f"downloading {url} -> {target}", file=sys.stderr)
    partial = target.with_name(target.name + ".partial")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out)
        read_idx(partial)
    except (OSError, IDXError) as error:
        partial.unlink(missing_ok=True)
        raise DataError("data.download", f"could not fetch {url}: {error}") from error
    partial.replace(target)


class FashionMNISTDataModule(IDXDataModule):
    name = "fashion_mnist"
    mirror = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    system_root = Path("/usr/share/datasets/fashion-mnist")
    how_to_get = ("On Debian/Ubuntu: `apt-get install dataset-fashion-mnist` puts them in "
                  "/usr/share/datasets/fashion-mnist (`dpkg -L dataset-fashion-mnist` lists "
                  "them); point data.root at the folder that holds them.")

    @property
    def class_names(self) -> list[str]:
        return ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                "Sneaker", "Bag", "Ankle boot"]


class MNISTDataModule(IDXDataModule):
    name = "mnist"
    mirror = "https://ossci-datasets.s3.amazonaws.com/mnist/"
    how_to_get = ("Put the four MNIST IDX files (train-images-idx3-ubyte.gz, "
                  "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
                  "t10k-labels-idx1-ubyte.gz) in data.root.")
