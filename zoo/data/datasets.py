"""Labelled image sets for `eval`, in the four layouts people already have on disk.

    labels = LabelSpace.imagenet()                      # the 1001-class TF-slim models
    data = open_dataset(Path("val"), labels)            # layout found from what is there
    for sample in data:                                 # stable order, read lazily
        sample.label, sample.read_bytes()

Layouts (``open_dataset`` decides, and says why when nothing fits):

1. ``synsets``: a folder of ILSVRC synset folders (``n01440764/*.JPEG``); synset k in
   sorted order is class k+1 (``zoo/data/imagenet_synsets.txt``), as TF-slim's
   ``build_imagenet_data.py`` numbers them.
2. ``tfrecord``: TF-slim's ImageNet shards (``validation-00000-of-00128`` ...) with the
   features ``image/encoded`` and ``image/class/label`` (1..1000); ``image/class/synset``,
   when present, must agree with the label. ``split`` picks the shards.
3. ``csv``: a CSV/TSV file of ``path,label`` rows; a label is a synset id, a class index or
   the exact label text; paths are relative to the file.
4. ``classes``: for a model with its own class names, one folder per class name.

Names and labels are checked before the first image is decoded (TFRecords: as each
record is read); images themselves are only opened by the caller, so a set of any size
streams through in constant memory. Every error names the folder, file, row or record.
"""

from __future__ import annotations

import csv
import io
import difflib
import re
import struct
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import DataError, MissingDependencyError
from .imagefiles import (IMAGE_SUFFIXES, file_problem, has_image_suffix, list_children, read_image_bytes,
                         scan_folder)

SYNSET = re.compile(r"^n\d{8}$")
MAX_LISTING_BYTES = 1 << 30
SPLITS = ("validation", "train")
_SHARD = re.compile(r"^(?P<split>[a-z]+)-\d{5}-of-\d{5}$")
_HEADER = ("path", "file", "filename", "image")


@lru_cache(maxsize=1)
def imagenet_synsets() -> tuple[str, ...]:
    """The 1000 ILSVRC-2012 synset ids in sorted order (line k = class index k + 1)."""
    text = (resources.files("zoo.data") / "imagenet_synsets.txt").read_text(encoding="ascii")
    synsets = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(synsets) != 1000 or list(synsets) != sorted(synsets):
        raise DataError("the packaged imagenet_synsets.txt is damaged", hint="reinstall mobilenet-zoo")
    return synsets


# ----------------------------------------------------------------------------- labels
@dataclass(frozen=True)
class LabelSpace:
    """The classes a model answers: their names, and synset ids for the ImageNet models."""

    names: tuple[str, ...]
    synsets: tuple[str, ...] | None = None  # synsets[k] is class k + first_synset_index
    first_synset_index: int = 1

    @classmethod
    def imagenet(cls, num_classes: int = 1001) -> "LabelSpace":
        from .labels import imagenet_labels

        names = imagenet_labels()
        if num_classes == 1000:  # a head without the background slot
            return cls(names[1:], imagenet_synsets(), 0)
        return cls(names, imagenet_synsets(), 1)

    @classmethod
    def of_classes(cls, names: Sequence[str]) -> "LabelSpace":
        return cls(tuple(names))

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def is_imagenet(self) -> bool:
        return self.synsets is not None

    def of_synset(self, synset: str) -> int | None:
        if self.synsets is None:
            return None
        from bisect import bisect_left

        i = bisect_left(self.synsets, synset)
        return i + self.first_synset_index if i < len(self.synsets) and self.synsets[i] == synset else None

    def parse(self, text: str, where: str) -> int:
        """A label as people write it -> class index: synset id, index, or exact name."""
        text = text.strip()
        if not text:
            raise DataError(f"{where}: empty label")
        if SYNSET.match(text) and self.is_imagenet:
            index = self.of_synset(text)
            if index is None:
                raise DataError(f"{where}: {text!r} is not one of the 1000 ILSVRC-2012 synsets",
                                hint="synset ids are listed in zoo/data/imagenet_synsets.txt")
            return index
        if text.isdigit():
            return self.check_index(int(text), where)
        matches = [i for i, name in enumerate(self.names) if name == text]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise DataError(f"{where}: label {text!r} names {len(matches)} classes "
                            f"({', '.join(map(str, matches))})",
                            hint="use the class index or the synset id instead")
        close = difflib.get_close_matches(text, self.names, n=3, cutoff=0.6)
        raise DataError(f"{where}: unknown label {text!r}",
                        hint=("did you mean: " + "; ".join(close)) if close else
                        "a label is a synset id (n01440764), a class index, or the exact label text")

    def check_index(self, index: int, where: str) -> int:
        low = self.first_synset_index if self.is_imagenet else 0  # never the background class
        if not low <= index < self.num_classes:
            raise DataError(f"{where}: label {index} is out of range {low}..{self.num_classes - 1}",
                            hint="ImageNet labels count from 1 (0 is the background class)"
                            if self.is_imagenet else None)
        return index


# ----------------------------------------------------------------------------- samples
@dataclass(frozen=True)
class Sample:
    """One labelled image: a file, or encoded bytes read from a record."""

    source: str             # how messages name it: a path, or ``shard#record``
    label: int
    path: Path | None = None
    data: bytes | None = None

    def read_bytes(self) -> bytes:
        """The encoded image, read under ``zoo.data.imagefiles``' rules (ImageFileError otherwise)."""
        return self.data if self.data is not None else read_image_bytes(self.path)  # type: ignore[arg-type]


class Dataset:
    """A labelled set in one layout; iterating yields ``Sample``s in a stable order."""

    layout = "?"

    def __init__(self, path: Path, labels: LabelSpace):
        self.path, self.labels = Path(path), labels

    size: int | None = None  # number of images when known before reading them
    # what the layout holds but is not an image file (``zoo.data.imagefiles``): (path, why)
    rejected: list[tuple[Path, str]] = []

    def __iter__(self) -> Iterator[Sample]:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.path} ({self.layout})"


class FolderDataset(Dataset):
    """Layouts 1 and 4: one sub-folder per class, its images (at any depth) in sorted order."""

    def __init__(self, path: Path, labels: LabelSpace, classes: list[tuple[str, int]], layout: str):
        super().__init__(path, labels)
        self.classes, self.layout = classes, layout
        self.size, self.rejected = 0, []
        for name, _ in classes:
            found = scan_folder(self.path / name, recursive=True)
            self.size += len(found.images)
            self.rejected += found.rejected
        if self.size == 0:
            raise DataError(f"{path}: no images in its {len(classes)} class folders",
                            hint=f"images need one of the suffixes {', '.join(IMAGE_SUFFIXES)}")

    def __iter__(self) -> Iterator[Sample]:
        for name, label in self.classes:
            for image in scan_folder(self.path / name, recursive=True).images:  # listed again: nothing big is held
                yield Sample(str(image), label, image)


class CsvDataset(Dataset):
    """Layout 3: ``path,label`` rows (TSV when the file says so), all checked up front."""

    layout = "csv"

    def __init__(self, path: Path, labels: LabelSpace):
        super().__init__(path, labels)
        self.rows = list(self._read())
        self.size = len(self.rows)
        if not self.rows:
            raise DataError(f"{path}: no rows", hint="write one `path,label` row per image")

    def _read(self) -> Iterator[tuple[Path, int]]:
        text = _read_listing(self.path)
        first = next((line for line in text.splitlines() if line.strip()), "")
        delimiter = "\t" if self.path.suffix.lower() == ".tsv" or "\t" in first else ","
        base = self.path.parent
        # the csv module sees the text whole: a quoted field may hold the delimiter or a newline
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        number = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # a field over the module's size limit, an unclosed quote ...
                raise DataError(f"{self.path}, line {reader.line_num}: not a valid {delimiter!r}-separated row ({exc})",
                                hint="one `path,label` row per image; quote fields that hold the delimiter") from None
            number += 1
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            where = f"{self.path}, row {number}"
            if len(row) != 2:
                raise DataError(f"{where}: expected 2 fields (path{delimiter!r}label), got {len(row)}",
                                hint='quote labels that contain the delimiter: "tabby, tabby cat"')
            if number == 1 and row[0].strip().lower() in _HEADER and row[1].strip().lower() == "label":
                continue  # a header row
            yield base / row[0].strip(), self.labels.parse(row[1], where)

    def __iter__(self) -> Iterator[Sample]:
        for path, label in self.rows:
            yield Sample(str(path), label, path)


class TFRecordDataset(Dataset):
    """Layout 2: TF-slim ImageNet shards of ``tf.train.Example`` records, read in order.

    Records are read with plain file I/O (length-prefixed frames); TensorFlow is needed
    only to parse the Example protocol buffers.
    """

    layout = "tfrecord"

    def __init__(self, path: Path, labels: LabelSpace, shards: list[Path], split: str):
        super().__init__(path, labels)
        self.shards, self.split = shards, split
        self.size = sum(_count_records(shard) for shard in shards)
        if self.size == 0:
            raise DataError(f"{path}: the {split} shards hold no records")

    def describe(self) -> str:
        return f"{self.path} ({self.layout}, {self.split}, {len(self.shards)} shards)"

    def __iter__(self) -> Iterator[Sample]:
        example_class = _example_class()
        for shard in self.shards:
            for number, record in enumerate(_records(shard)):
                where = f"{shard}#{number}"
                try:
                    example = example_class.FromString(record)
                except Exception as exc:  # protobuf's DecodeError
                    raise DataError(f"{where}: not a tf.train.Example ({exc})") from None
                yield self._sample(example.features.feature, where)

    def _sample(self, features, where: str) -> Sample:
        missing = [key for key in ("image/encoded", "image/class/label") if key not in features]
        if missing:
            raise DataError(f"{where}: the record has no {missing[0]!r} feature "
                            f"(it has: {', '.join(sorted(features)) or 'none'})",
                            hint="eval reads TF-slim ImageNet records (build_imagenet_data.py)")
        encoded = features["image/encoded"].bytes_list.value
        label = features["image/class/label"].int64_list.value
        if len(encoded) != 1 or len(label) != 1:
            raise DataError(f"{where}: 'image/encoded' and 'image/class/label' must hold one value each")
        index = self.labels.check_index(int(label[0]), where)
        synset = features["image/class/synset"].bytes_list.value if "image/class/synset" in features else []
        if synset and self.labels.is_imagenet:
            name = synset[0].decode("ascii", "replace")
            if self.labels.of_synset(name) != index:
                raise DataError(f"{where}: label {index} disagrees with synset {name!r} "
                                f"(which is label {self.labels.of_synset(name)})",
                                hint="the records use another class numbering than TF-slim's sorted synsets")
        return Sample(where, index, None, bytes(encoded[0]))


def _example_class():
    try:
        import tensorflow as tf
    except ImportError:
        raise MissingDependencyError("tensorflow", "reading TFRecord files") from None
    return tf.train.Example


def _masked_crc(data: bytes) -> int:
    """TFRecord's checksum: CRC-32C of ``data``, rotated right by 15 bits plus a constant
    (``tensorflow/core/lib/hash/crc32c.h``: ``Mask``)."""
    try:
        import google_crc32c
    except ImportError:
        raise MissingDependencyError("google-crc32c", "checking TFRecord files") from None
    crc = google_crc32c.value(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _frames(path: Path) -> Iterator[tuple[int, int]]:
    """(offset of the data, length) of each TFRecord frame: u64 length, u32 masked CRC of the
    length, data, u32 masked CRC of the data. The length's CRC is checked here (a damaged
    length would misplace every later record); the data's CRC by ``_records``."""
    problem = file_problem(path, limit=None)
    if problem is not None:
        raise DataError(f"{path}: {problem}", hint="TFRecord shards must be regular files")
    size = path.stat().st_size
    with open(path, "rb") as f:
        offset = 0
        while offset < size:
            header = f.read(12)
            if len(header) < 12:
                raise DataError(f"{path}: truncated record header at byte {offset}",
                                hint="the shard is incomplete; copy it again")
            (length,) = struct.unpack("<Q", header[:8])
            (length_crc,) = struct.unpack("<I", header[8:12])
            if _masked_crc(header[:8]) != length_crc:
                raise DataError(f"{path}: the record at byte {offset} has a damaged length (CRC mismatch)",
                                hint="the shard is corrupted or not a TFRecord file; copy it again")
            end = offset + 12 + length + 4
            if end > size:
                raise DataError(f"{path}: record at byte {offset} claims {length} bytes, past the end of the file",
                                hint="the shard is incomplete or not a TFRecord file")
            yield offset + 12, length
            offset = end
            f.seek(offset)


def _count_records(path: Path) -> int:
    return sum(1 for _ in _frames(path))


def _records(path: Path) -> Iterator[bytes]:
    """Each record's data, its CRC checked: a flipped bit is an error, never a wrong label or image."""
    with open(path, "rb") as f:
        for number, (start, length) in enumerate(_frames(path)):
            f.seek(start)
            data = f.read(length + 4)
            (crc,) = struct.unpack("<I", data[length:])
            if _masked_crc(data[:length]) != crc:
                raise DataError(f"{path}#{number}: the record's data is damaged (CRC mismatch)",
                                hint="the shard is corrupted; copy it again (a wrong accuracy would follow)")
            yield data[:length]


def _read_listing(path: Path) -> str:
    """A CSV/TSV listing as text: a regular file, UTF-8 (with or without a BOM), of a sane size."""
    try:
        info = path.stat()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if info.st_size > MAX_LISTING_BYTES:
        raise DataError(f"{path}: {info.st_size >> 20} MiB is too large for a listing of path,label rows",
                        hint=f"split it; a listing may have at most {MAX_LISTING_BYTES >> 20} MiB")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None


# ----------------------------------------------------------------------------- dispatch
def open_dataset(path: str | Path, labels: LabelSpace, *, split: str = "validation") -> Dataset:
    """Recognise the layout at ``path`` and check its names and labels; see the module doc."""
    path = Path(path)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}", hint=f"use one of: {', '.join(SPLITS)}")
    if path.is_file():
        return CsvDataset(path, labels)
    if path.exists() and not path.is_dir():
        raise DataError(f"{path}: {file_problem(path, limit=None) or 'not a file or folder'}",
                        hint="pass a folder of class folders, a folder of TFRecord shards, or a CSV file")
    if not path.is_dir():
        raise DataError(f"data set not found: {path}",
                        hint="pass a folder of class folders, a folder of TFRecord shards, or a CSV file")
    listing = list_children(path)
    folders = [name for name, is_dir in listing if is_dir]
    files = [name for name, is_dir in listing if not is_dir]
    shards = [name for name in files if _SHARD.match(name)]
    if shards:
        wanted = [path / name for name in shards if _SHARD.match(name).group("split") == split]
        if not wanted:
            found = sorted({_SHARD.match(n).group("split") for n in shards})
            raise DataError(f"{path}: no {split}-NNNNN-of-NNNNN shards (found {', '.join(found)} shards)",
                            hint=f"pick the split with split='{found[0]}'", params=("split",))
        return TFRecordDataset(path, labels, wanted, split)
    if not folders:
        images = [name for name in files if has_image_suffix(name)]
        raise DataError(f"{path} is empty" if not listing else
                        f"{path} holds {len(images) or 'no'} images but no class folders" if images else
                        f"{path} holds no class folders, TFRecord shards or images",
                        hint="lay images out as <class>/<image> (ILSVRC: n01440764/x.JPEG), "
                             "or list them in a CSV of path,label rows")
    if labels.is_imagenet:
        return FolderDataset(path, labels, _synset_classes(path, folders, labels), "synsets")
    return FolderDataset(path, labels, _named_classes(path, folders, labels), "classes")


def _synset_classes(path: Path, folders: list[str], labels: LabelSpace) -> list[tuple[str, int]]:
    others = [name for name in folders if not SYNSET.match(name)]
    if others:
        shown = ", ".join(repr(n) for n in others[:3]) + (" ..." if len(others) > 3 else "")
        raise DataError(f"{path}: {len(others)} of {len(folders)} folders are not ILSVRC synset ids "
                        f"(n01440764 ...): {shown}",
                        hint="the ImageNet models need synset folders; or list images in a CSV of "
                             "path,label rows (labels may be the exact class names)")
    classes = []
    for name in folders:
        index = labels.of_synset(name)
        if index is None:
            raise DataError(f"{path / name}: {name!r} is not one of the 1000 ILSVRC-2012 synsets",
                            hint="synset ids are listed in zoo/data/imagenet_synsets.txt")
        classes.append((name, index))
    return classes


def _named_classes(path: Path, folders: list[str], labels: LabelSpace) -> list[tuple[str, int]]:
    index = {name: i for i, name in enumerate(labels.names)}
    unknown = [name for name in folders if name not in index]
    if unknown:
        raise DataError(f"{path / unknown[0]}: {unknown[0]!r} is not one of the model's "
                        f"{labels.num_classes} classes",
                        hint="the model's classes: " + ", ".join(labels.names[:10])
                        + (" ..." if labels.num_classes > 10 else ""))
    return [(name, index[name]) for name in folders]
