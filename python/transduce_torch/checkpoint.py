"""Transduce checkpoints: safetensors without the safetensors package, config.json, and atomic checkpoint folders.

A checkpoint is one folder (src/Transduce/Checkpoints/Checkpoint.cs): config.json ({"format": "transduce-checkpoint",
"version": 1, "model", "text", "training", "generation"}), model.safetensors (weights under Transduce's parameter names),
source.vocab.json, target.vocab.json and the subword model if any (bpe.json, or source.spm and target.spm). It is
written into a sibling temporary folder, config.json last, and renamed into place, so a crash never leaves a torn
checkpoint under its name; recover() puts back a complete copy if a crash fell between the two renames (as
Checkpoint.Recover does).
"""

import ctypes
import json
import os
import shutil
import struct
import uuid

import torch

from .model import build_model

FORMAT_TAG = "transduce-checkpoint"
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
# The files that make up the model and its text side, besides config.json and the weights.
TEXT_FILES = ("source.vocab.json", "target.vocab.json", "bpe.json", "source.spm", "target.spm")

_DTYPES = {
    "F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}
_NAMES = {dtype: name for name, dtype in _DTYPES.items()}
_ITEM_SIZES = {name: torch.empty(0, dtype=dtype).element_size() for name, dtype in _DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024


def read_safetensors_header(path, file_size=None):
    """(header dict, offset of the data) of a safetensors file: 8-byte little-endian header length, then JSON."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
        (length,) = struct.unpack("<Q", raw)
        size = os.fstat(f.fileno()).st_size if file_size is None else file_size
        if length == 0 or length > min(_MAX_HEADER, size - 8):
            raise ValueError(f"{path}: not a safetensors file (header length {length} does not fit a {size}-byte file)")
        try:
            header = json.loads(f.read(length))
        except ValueError as e:
            raise ValueError(f"{path}: safetensors header is not valid JSON ({e})") from None
    data_start = 8 + length
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry.get("dtype") not in _DTYPES:
            raise ValueError(f"{path}: tensor '{name}' has unsupported dtype '{entry.get('dtype')}'")
        start, end = entry["data_offsets"]
        count = 1
        for d in entry["shape"]:
            count *= d
        if not 0 <= start <= end <= size - data_start or end - start != count * _ITEM_SIZES[entry["dtype"]]:
            raise ValueError(f"{path}: tensor '{name}' has data offsets that do not fit its shape or the file (truncated?)")
    return header, data_start


def read_safetensors(path):
    """Every tensor of a safetensors file, each with its own storage."""
    header, data_start = read_safetensors_header(path)
    with open(path, "rb") as f:
        f.seek(data_start)
        data = bytearray(f.read())  # writable, so torch.frombuffer does not warn
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        dtype = _DTYPES[entry["dtype"]]
        if end == start:
            tensors[name] = torch.empty(entry["shape"], dtype=dtype)
        else:
            # clone: each tensor gets its own storage instead of a view that keeps the whole file alive
            tensors[name] = torch.frombuffer(memoryview(data)[start:end], dtype=dtype).reshape(entry["shape"]).clone()
    return tensors


def write_safetensors(path, tensors, metadata=None):
    """Writes tensors (name -> tensor) as Transduce does: names in ordinal order, header padded with spaces to 8 bytes,
    written to a temporary file, flushed to disk and renamed over path."""
    header = {}
    if metadata:
        header["__metadata__"] = {k: metadata[k] for k in sorted(metadata)}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        if t.dtype not in _NAMES:
            raise ValueError(f"safetensors: tensor '{name}' has unsupported dtype {t.dtype}")
        blob = _tensor_bytes(t)
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)

    def write(f):
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for blob in blobs:
            f.write(blob)
    atomic_write(path, write)


def _tensor_bytes(t):
    """The raw little-endian bytes of a contiguous CPU tensor (no numpy needed)."""
    if t.numel() == 0:
        return b""
    return ctypes.string_at(t.data_ptr(), t.numel() * t.element_size())


def atomic_write(path, write):
    """Writes through write(file) into a temporary file beside path, flushes it to disk, then renames it over path."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex}")
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, value):
    atomic_write(path, lambda f: f.write(json.dumps(value, indent=2, ensure_ascii=False).encode("utf-8")))


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found") from None
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def read_config(directory):
    """The checkpoint's config.json, checked for Transduce's format tag and version."""
    path = os.path.join(directory, CONFIG_FILE)
    config = read_json(path)
    if config.get("format") != FORMAT_TAG:
        raise ValueError(f"{path}: not a Transduce checkpoint (format is '{config.get('format', 'missing')}', expected '{FORMAT_TAG}')")
    if config.get("version") != 1:
        raise ValueError(f"{path}: unsupported checkpoint version {config.get('version')} (this package reads version 1)")
    return config


def load_weights(model, path):
    """Copies a safetensors file into model (strictly: every name, no extra, same shapes), naming what does not fit.
    Each tensor is read from the file straight into the model's own storage, so loading takes no memory beyond the
    model's (a 600M-parameter model would otherwise hold the file's bytes and a copy of every tensor besides)."""
    header, data_start = read_safetensors_header(path)
    entries = {n: e for n, e in header.items() if n != "__metadata__"}
    expected = model.state_dict()
    # A tied/shared weight (one tensor under several names) is stored under one of its names (Transduce writes the first,
    # as transformers' save_pretrained does) or under each (older checkpoints, and this package's own saves).
    groups = {}
    for n, t in expected.items():
        groups.setdefault((t.data_ptr(), tuple(t.shape), tuple(t.stride())), []).append(n)
    stored = {n: next((m for m in names if m in entries), None) for names in groups.values() for n in names}
    problems = [f"missing tensor '{names[0]}'" for names in groups.values() if stored[names[0]] is None]
    problems += [f"unexpected tensor '{n}'" for n in entries if n not in expected]
    problems += [f"tensor '{n}' has shape {entries[n]['shape']}, the model needs {list(t.shape)}"
                 for n, t in expected.items() if n in entries and list(t.shape) != list(entries[n]["shape"])]
    if problems:
        raise ValueError(f"{path}: weights do not fit the model: {'; '.join(problems)}")
    with open(path, "rb") as f, torch.no_grad():
        for name, t in expected.items():
            if stored[name] != name:
                continue  # its weight is read under the name the file stores it under
            start, end = entries[name]["data_offsets"]
            dtype = _DTYPES[entries[name]["dtype"]]
            direct = dtype == t.dtype and t.is_contiguous() and t.device.type == "cpu"
            target = t if direct else torch.empty(t.shape, dtype=dtype)
            if end > start:
                f.seek(data_start + start)
                if f.readinto((ctypes.c_char * (end - start)).from_address(target.data_ptr())) != end - start:
                    raise ValueError(f"{path}: tensor '{name}' is truncated")
            if not direct:
                t.copy_(target)
    return model


def load_checkpoint(directory):
    """The model of a Transduce checkpoint folder with its weights, in eval mode. model.checkpoint_config is the
    whole config.json."""
    recover(directory)
    config = read_config(directory)
    model = build_model(config["model"])
    load_weights(model, os.path.join(directory, WEIGHTS_FILE))
    model.checkpoint_config = config
    return model.eval()


def save_checkpoint(directory, state_dict, config, write_extras=None, copy_from=None):
    """Writes a checkpoint folder atomically, as Checkpoint.Save does: a sibling temporary folder gets the weights,
    the text files of copy_from (vocabularies, subword model), whatever write_extras(tmp) writes, and config.json
    last; sub-folders of an existing checkpoint (best/, history/ …) move into the new one; then the old folder is
    renamed aside, the new one into place, and the old one deleted."""
    target = os.path.abspath(directory.rstrip("/"))
    parent, name = os.path.dirname(target), os.path.basename(target)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{name}.tmp-{uuid.uuid4().hex}")
    os.makedirs(tmp)
    try:
        write_safetensors(os.path.join(tmp, WEIGHTS_FILE), state_dict, {"format": "pt", "producer": "transduce-torch"})
        if copy_from is not None:
            for file in TEXT_FILES:
                source = os.path.join(copy_from, file)
                if os.path.exists(source):
                    atomic_write(os.path.join(tmp, file), lambda f, s=source: f.write(open(s, "rb").read()))
        if write_extras is not None:
            write_extras(tmp)
        write_json(os.path.join(tmp, CONFIG_FILE), config)  # last: a temporary folder that has it is complete
        old = None
        if os.path.isdir(target):
            for entry in os.listdir(target):
                path = os.path.join(target, entry)
                if os.path.isdir(path) and not os.path.exists(os.path.join(tmp, entry)):
                    os.rename(path, os.path.join(tmp, entry))
            old = os.path.join(parent, f".{name}.old-{uuid.uuid4().hex}")
            os.rename(target, old)
        os.rename(tmp, target)
        _fsync_directory(parent)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)


def recover(directory):
    """If directory is missing because a save was interrupted between its two renames, moves the newest complete copy
    (one with config.json) back into place."""
    target = os.path.abspath(directory.rstrip("/"))
    parent, name = os.path.dirname(target), os.path.basename(target)
    if os.path.exists(target) or not os.path.isdir(parent):
        return
    candidates = [os.path.join(parent, e) for e in os.listdir(parent)
                  if e.startswith(f".{name}.tmp-") or e.startswith(f".{name}.old-")]
    complete = [c for c in candidates if os.path.exists(os.path.join(c, CONFIG_FILE))]
    if complete:
        newest = max(complete, key=lambda c: os.path.getmtime(os.path.join(c, CONFIG_FILE)))
        os.rename(newest, target)


def _fsync_directory(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
