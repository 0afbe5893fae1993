"""Seeded damage to DICOM files, the way disks, transfers and broken writers corrupt them.

Damage is applied to the bytes, not through pydicom, so the result is exactly what a reader meets: a cut file, flipped
bytes, an element whose VR or length lies, absurd image dimensions, a malformed Number of Frames. `elements` walks the
layout pydicom writes (Part 10 preamble and meta, then explicit or implicit VR little endian, sequences of defined or
undefined length, Pixel Data last) to find where each element's tag, VR, length and value lie.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.valuerep import VR

DAMAGES = (
    "truncate",  # the file cut at a random offset
    "header_bytes",  # 1-4 bytes flipped between the "DICM" magic and the Pixel Data element
    "pixel_bytes",  # 1-4 bytes flipped inside the Pixel Data value (native pixels or an encapsulated stream)
    "wrong_vr",  # an explicit-VR element's VR rewritten to another VR
    "absurd_size",  # Rows, Columns or BitsAllocated set to 0, 1 or 65535
    "frames_1a",  # NumberOfFrames "1A"
    "length_past_eof",  # an element's length pointing past the end of the file
)
PIXEL_DATA = 0x7FE00010
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
UNDEFINED = 0xFFFFFFFF
_LONG_FORM = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}  # 4-byte length
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_TAGS = {"Rows": 0x00280010, "Columns": 0x00280011, "BitsAllocated": 0x00280100}
_NUMBER_OF_FRAMES = 0x00280008
# Attributes that change how stored values become displayed grey levels while the file stays consistent: a damaged
# value here is another valid value, which no reader can tell from the original. Geometry (Rows, Columns, bits
# allocated, samples, frames) is left out on purpose: a changed value no longer fits the pixel data, so it is
# detectable and must make the file fail, never decode differently.
PRESENTATION_KEYWORDS = (
    "BitsStored", "HighBit", "PixelRepresentation", "PhotometricInterpretation", "RescaleSlope", "RescaleIntercept",
    "ModalityLUTSequence", "WindowCenter", "WindowWidth", "VOILUTFunction", "VOILUTSequence", "PixelPaddingValue",
)  # fmt: skip


@dataclass(frozen=True)
class Element:
    """Where one top-level data element lies in the file."""

    tag: int
    vr: str | None  # None in an implicit-VR dataset
    start: int  # offset of its tag
    length_at: int  # offset of its length field
    length_size: int  # 2 (explicit VR, short form) or 4 bytes
    value_start: int
    length: int  # as written; UNDEFINED for an undefined length

    @property
    def explicit(self) -> bool:
        return self.vr is not None


@dataclass(frozen=True)
class Damage:
    """What was done to a file: the damage kind and its parameters (offsets, element, values)."""

    kind: str
    detail: str


def elements(data: bytes) -> list[Element]:
    """The top-level elements of a Part 10 file written by pydicom, meta group first, up to Pixel Data."""
    if data[128:132] != b"DICM":
        raise ValueError("not a Part 10 file (no DICM magic at offset 128)")
    found: list[Element] = []
    position, syntax = 132, ""
    while position < len(data) and struct.unpack_from("<H", data, position)[0] == 0x0002:
        element, position = _element(data, position, explicit=True)
        found.append(element)
        if element.tag == 0x00020010:
            syntax = data[element.value_start : element.value_start + element.length].rstrip(b"\0 ").decode()
    explicit = syntax != IMPLICIT_VR_LITTLE_ENDIAN
    while position < len(data):
        element, position = _element(data, position, explicit)
        found.append(element)
        if element.tag == PIXEL_DATA:
            break
    return found


def apply(data: bytes, kind: str, rng: np.random.Generator) -> tuple[bytes, Damage]:
    """`data` with one damage of `kind`, parameters drawn from `rng`."""
    return _DAMAGE_FUNCTIONS[kind](bytearray(data), elements(data), rng)


def damage_file(clean: Path, damaged: Path, kind: str, rng: np.random.Generator) -> Damage:
    """Write a damaged copy of `clean` to `damaged`."""
    data, damage = apply(clean.read_bytes(), kind, rng)
    damaged.parent.mkdir(parents=True, exist_ok=True)
    damaged.write_bytes(data)
    return damage


def presentation_changes(clean: Path, damaged: Path) -> list[str]:
    """Keywords of PRESENTATION_KEYWORDS (and the transfer syntax) whose value differs between the two files as
    pydicom reads them (sequences item by item); ["<unreadable>"] when the damaged file cannot be read at all."""
    before = _presentation(clean)
    try:
        after = _presentation(damaged)
    except Exception:  # the damaged file cannot be parsed: nothing explains a decode of it
        return ["<unreadable>"]
    return [keyword for keyword in before if not _same(before[keyword], after[keyword])]


def _presentation(path: Path) -> dict[str, object]:
    ds = pydicom.dcmread(path)
    values: dict[str, object] = {"TransferSyntaxUID": str(ds.file_meta.get("TransferSyntaxUID"))}
    for keyword in PRESENTATION_KEYWORDS:
        try:
            values[keyword] = ds.get(keyword)
            if isinstance(values[keyword], pydicom.Sequence):  # convert every nested value now, while it can fail
                values[keyword] = [{e.tag: e.value for e in item} for item in values[keyword]]
        except Exception as exc:  # a value that cannot be converted differs from the clean, convertible one
            values[keyword] = f"<{type(exc).__name__}>"
    return values


def _same(before: object, after: object) -> bool:
    try:
        return bool(before == after)
    except Exception:  # incomparable values (a number against a list of bytes) are not the same
        return False


def _element(data: bytes, position: int, explicit: bool) -> tuple[Element, int]:
    """The element at `position` and the offset after it (its value skipped, sequences walked through)."""
    group, number = struct.unpack_from("<HH", data, position)
    tag = group << 16 | number
    if tag in (_ITEM, _ITEM_END, _SEQUENCE_END) or not explicit:
        vr, length_at, length_size = None, position + 4, 4
    else:
        vr = data[position + 4 : position + 6].decode("ascii")
        long_form = vr in _LONG_FORM
        length_at, length_size = position + (8 if long_form else 6), 4 if long_form else 2
    length = int.from_bytes(data[length_at : length_at + length_size], "little")
    value_start = length_at + length_size
    element = Element(tag, vr, position, length_at, length_size, value_start, length)
    if length != UNDEFINED:
        return element, value_start + length
    if tag == PIXEL_DATA:  # encapsulated: fragments up to the end of the file
        return element, len(data)
    is_sequence = vr == "SQ" or (vr is None and dictionary_VR(tag) == "SQ")
    if not is_sequence and tag != _ITEM:
        raise ValueError(f"undefined length on ({group:04X},{number:04X}) that is not a sequence or an item")
    return element, _skip_undefined(data, value_start, explicit, end=_ITEM_END if tag == _ITEM else _SEQUENCE_END)


def _skip_undefined(data: bytes, position: int, explicit: bool, end: int) -> int:
    """The offset after the delimiter `end` that closes an undefined-length item or sequence starting here."""
    while position < len(data):
        element, after = _element(data, position, explicit)
        if element.tag == end:
            return after
        position = after
    raise ValueError("undefined-length item or sequence without its delimiter")


def _dataset(found: list[Element]) -> list[Element]:
    return [e for e in found if e.tag >> 16 != 0x0002]


def _flip(data: bytearray, low: int, high: int, rng: np.random.Generator) -> list[int]:
    """XOR 1-4 distinct bytes in [low, high) with non-zero masks; returns their offsets."""
    count = min(int(rng.integers(1, 5)), high - low)
    offsets = sorted(int(o) for o in rng.choice(np.arange(low, high), size=count, replace=False))
    for offset in offsets:
        data[offset] ^= int(rng.integers(1, 256))
    return offsets


def _truncate(data: bytearray, found: list[Element], rng: np.random.Generator) -> tuple[bytes, Damage]:
    cut = int(rng.integers(128, len(data)))
    return bytes(data[:cut]), Damage("truncate", f"cut at byte {cut} of {len(data)}")


def _header_bytes(data: bytearray, found: list[Element], rng: np.random.Generator) -> tuple[bytes, Damage]:
    pixel = found[-1]
    offsets = _flip(data, 128, pixel.start, rng)
    return bytes(data), Damage("header_bytes", f"flipped bytes {offsets} before Pixel Data at {pixel.start}")


def _pixel_bytes(data: bytearray, found: list[Element], rng: np.random.Generator) -> tuple[bytes, Damage]:
    pixel = found[-1]
    end = len(data) if pixel.length == UNDEFINED else pixel.value_start + pixel.length
    offsets = _flip(data, pixel.value_start, end, rng)
    return bytes(data), Damage("pixel_bytes", f"flipped bytes {offsets} of Pixel Data [{pixel.value_start}, {end})")


def _wrong_vr(data: bytearray, found: list[Element], rng: np.random.Generator) -> tuple[bytes, Damage]:
    candidates = [e for e in found if e.explicit]
    element = candidates[int(rng.integers(0, len(candidates)))]
    others = sorted(str(v) for v in VR if str(v) != element.vr and len(str(v)) == 2)
    new = others[int(rng.integers(0, len(others)))]
    data[element.start + 4 : element.start + 6] = new.encode("ascii")
    return bytes(data), Damage("wrong_vr", f"({element.tag:08X}) VR {element.vr} -> {new}")


def _absurd_size(data: bytearray, found: list[Element], rng: np.random.Generator) -> tuple[bytes, Damage]:
    keyword = str(rng.choice(sorted(_TAGS)))
    value = int(rng.choice([0, 1, 65535]))
    element = next(e for e in found if e.tag == _TAGS[keyword])
    struct.pack_into("<H", data, element.value_start, value)
    return bytes(data), Damage("absurd_size", f"{keyword} = {value}")


def _frames_1a(data: bytearray, found: list[Element], rng: np.random.Generator) -> tuple[bytes, Damage]:
    dataset = _dataset(found)
    explicit = dataset[0].explicit
    header = struct.pack("<HH", 0x0028, 0x0008) + (b"IS" + struct.pack("<H", 2) if explicit else struct.pack("<I", 2))
    existing = next((e for e in dataset if e.tag == _NUMBER_OF_FRAMES), None)
    if existing is not None:  # replace the element, value and all
        start, end = existing.start, existing.value_start + existing.length
    else:  # insert it in tag order, before the first element that follows it
        start = end = next(e.start for e in dataset if e.tag > _NUMBER_OF_FRAMES)
    return bytes(data[:start] + header + b"1A" + data[end:]), Damage("frames_1a", "NumberOfFrames = '1A'")


def _length_past_eof(data: bytearray, found: list[Element], rng: np.random.Generator) -> tuple[bytes, Damage]:
    limit = {2: 0xFFFF, 4: UNDEFINED - 1}
    candidates = [e for e in found if len(data) - e.value_start < limit[e.length_size]]
    element = candidates[int(rng.integers(0, len(candidates)))]
    length = int(rng.integers(len(data) - element.value_start + 1, limit[element.length_size] + 1))
    data[element.length_at : element.length_at + element.length_size] = length.to_bytes(element.length_size, "little")
    return bytes(data), Damage(
        "length_past_eof", f"({element.tag:08X}) length {element.length} -> {length}, file {len(data)} bytes"
    )


_DAMAGE_FUNCTIONS = {
    "truncate": _truncate,
    "header_bytes": _header_bytes,
    "pixel_bytes": _pixel_bytes,
    "wrong_vr": _wrong_vr,
    "absurd_size": _absurd_size,
    "frames_1a": _frames_1a,
    "length_past_eof": _length_past_eof,
}
