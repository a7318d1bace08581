"""Token shards written by `transduce prepare`, and the batches of Transduce's Trainer drawn from them.

Shards (src/Transduce/Data/TokenShards.cs): a folder with shards.json, {"format": "transduce-token-shards",
"version": 1, "pairs", "source_vocab_size", "target_vocab_size", "source_tokens", "target_tokens", "shards": [{"file",
"pairs"}]}, and safetensors files holding source_ids/target_ids (int32, every pair's ids one after the other, no special
tokens) and source_offsets/target_offsets (int64, pairs + 1 entries). They are memory-mapped here, not read.

Batches (src/Transduce/Data/Batching.cs): the order of an epoch depends only on the run's seed and the epoch number,
through .NET's seeded System.Random, which NetRandom reproduces exactly, so this package draws the very batches the
.NET Trainer draws, and a run can move between the two.
"""

import json
import mmap
import os

import torch

from .checkpoint import read_safetensors_header
from .model import BOS_ID, EOS_ID, PAD_ID

SHARDS_FORMAT = "transduce-token-shards"
MANIFEST_FILE = "shards.json"

_INT_MAX = 2147483647


def _int32(x):
    """x wrapped to a signed 32-bit integer, as C#'s unchecked arithmetic does."""
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x >= (1 << 31) else x


class NetRandom:
    """System.Random(seed) of .NET: Knuth's subtractive generator as .NET implements it for seeded instances
    (Net5CompatSeedImpl), with Next(min, max) and Shuffle (Fisher–Yates, j = Next(i, n) for i = 0 … n − 2)."""

    def __init__(self, seed):
        seed = _int32(seed)
        subtraction = _INT_MAX if seed == -(1 << 31) else abs(seed)
        a = [0] * 56
        mj = _int32(161803398 - subtraction)
        a[55] = mj
        mk, ii = 1, 0
        for _ in range(1, 55):
            ii += 21
            if ii >= 55:
                ii -= 55
            a[ii] = mk
            mk = _int32(mj - mk)
            if mk < 0:
                mk = _int32(mk + _INT_MAX)
            mj = a[ii]
        for _ in range(1, 5):
            for i in range(1, 56):
                n = i + 30
                if n >= 55:
                    n -= 55
                a[i] = _int32(a[i] - a[1 + n])
                if a[i] < 0:
                    a[i] = _int32(a[i] + _INT_MAX)
        self._a, self._next, self._nextp = a, 0, 21

    def _sample(self):
        a, i, j = self._a, self._next + 1, self._nextp + 1
        if i >= 56:
            i = 1
        if j >= 56:
            j = 1
        r = a[i] - a[j]   # both in [0, int.MaxValue): no overflow
        if r == _INT_MAX:
            r -= 1
        if r < 0:
            r += _INT_MAX
        a[i], self._next, self._nextp = r, i, j
        return r

    def next(self, low, high):
        """Random.Next(low, high) for high − low ≤ int.MaxValue."""
        return int(self._sample() * (1.0 / _INT_MAX) * (high - low)) + low

    def shuffle(self, values):
        n = len(values)
        for i in range(n - 1):
            j = int(self._sample() * (1.0 / _INT_MAX) * (n - i)) + i
            values[i], values[j] = values[j], values[i]


def epoch_order(count, seed, epoch, shuffle=True):
    """Batching.EpochOrder: a permutation of 0 … count − 1 that depends only on the seed and the epoch."""
    order = list(range(count))
    if shuffle:
        NetRandom(_int32(seed * 1_000_003 + epoch)).shuffle(order)
    return order


SHUFFLE_CHUNK_PAIRS = 100_000
SHUFFLE_WINDOW_CHUNKS = 10


def chunked_epoch_order(count, seed, epoch, chunk_pairs=SHUFFLE_CHUNK_PAIRS, window_chunks=SHUFFLE_WINDOW_CHUNKS):
    """Batching.ChunkedEpochOrder, the order of pairs read from shards: chunks of chunk_pairs neighbours in a shuffled
    order, the pairs of each window of window_chunks consecutive chunks shuffled together; epoch_order when the corpus
    fits one window."""
    if chunk_pairs * window_chunks >= count:
        return epoch_order(count, seed, epoch)
    chunks = (count + chunk_pairs - 1) // chunk_pairs
    chunk_order = list(range(chunks))
    random = NetRandom(_int32(seed * 1_000_003 + epoch * 65_537 + 17))
    random.shuffle(chunk_order)
    order = []
    for w in range(0, chunks, window_chunks):
        window = []
        for c in chunk_order[w:w + window_chunks]:
            window.extend(range(c * chunk_pairs, min(count, (c + 1) * chunk_pairs)))
        random.shuffle(window)
        order.extend(window)
    return order


def chunk(order, batch_size):
    """Batching.Chunk: consecutive batches of at most batch_size rows."""
    if batch_size <= 0:
        raise ValueError("batch size must be positive")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def bucketed_epoch(source_lengths, target_lengths, batch_size, max_tokens, seed, epoch):
    """Batching.BucketedEpoch: the seeded epoch order cut into pools of 100 batches, each pool sorted by length (ties by
    pair number) and cut into batches of at most batch_size pairs and max_tokens padded tokens on either side, then the
    batches shuffled. Lengths count <eos> (after the length cut)."""
    if batch_size <= 0:
        raise ValueError("batch size must be positive")
    order = chunked_epoch_order(len(source_lengths), seed, epoch)
    pool_size = max(batch_size * 100, 1)
    batches = []
    for start in range(0, len(order), pool_size):
        longest_of = [max(source_lengths[i], target_lengths[i]) for i in order[start:start + pool_size]]
        pool = sorted(zip(longest_of, order[start:start + pool_size]))
        current, longest = [], 0
        for length, i in pool:
            widest = max(longest, length)
            full = len(current) == batch_size or (max_tokens is not None and current and widest * (len(current) + 1) > max_tokens)
            if full:
                batches.append(current)
                current = []
                widest = length
            current.append(i)
            longest = widest
        if current:
            batches.append(current)
    NetRandom(_int32(seed * 7_919 + epoch * 104_729)).shuffle(batches)
    return batches


def with_eos(ids, max_steps):
    """Batching.WithEos: ids + <eos>, cut to max_steps (the <eos> is lost when the cut falls on it)."""
    length = len(ids) + 1 if max_steps is None else min(len(ids) + 1, max_steps)
    row = list(ids[:length])
    if length == len(ids) + 1:
        row.append(EOS_ID)
    return row


def lengths_with_eos(lengths, max_steps):
    """Token counts with <eos>, after the length cut (int64 tensor in, int64 tensor out)."""
    with_eos = lengths + 1
    return with_eos if max_steps is None else with_eos.clamp(max=max_steps)


class Batch:
    """A padded batch as Batching.Build makes it: source with <eos>, valid lengths, decoder input (<bos> + labels but
    the last), labels (target with <eos>); tokens = non-pad labels, positions = rows × label steps."""

    def __init__(self, source, valid_lengths, target_input, target_output, tokens, positions):
        self.source, self.valid_lengths = source, valid_lengths
        self.target_input, self.target_output = target_input, target_output
        self.tokens, self.positions = tokens, positions

    def to(self, device):
        return Batch(self.source.to(device), self.valid_lengths.to(device), self.target_input.to(device),
                     self.target_output.to(device), self.tokens, self.positions)


class _Shard:
    def __init__(self, path, pairs, source_vocab, target_vocab):
        header, data_start = read_safetensors_header(path)
        with open(path, "rb") as f:
            # copy-on-write: pages are shared with the page cache and read lazily; the buffer is writable for torch
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        tensors = {}
        for name, dtype in (("source_ids", torch.int32), ("target_ids", torch.int32),
                            ("source_offsets", torch.int64), ("target_offsets", torch.int64)):
            entry = header.get(name)
            if entry is None:
                raise ValueError(f"{path}: tensor '{name}' missing")
            if entry["dtype"] != ("I32" if dtype == torch.int32 else "I64") or len(entry["shape"]) != 1:
                raise ValueError(f"{path}: tensor '{name}' must be one-dimensional {'int32' if dtype == torch.int32 else 'int64'}")
            start, end = entry["data_offsets"]
            count = entry["shape"][0]
            tensors[name] = (torch.frombuffer(self._map, dtype=dtype, count=count, offset=data_start + start)
                             if count > 0 else torch.empty(0, dtype=dtype))
        for side, vocab in (("source", source_vocab), ("target", target_vocab)):
            ids, offsets = tensors[f"{side}_ids"], tensors[f"{side}_offsets"]
            if offsets.numel() != pairs + 1:
                raise ValueError(f"{path}: '{side}_offsets' has {offsets.numel()} entries, the manifest's {pairs} pairs need {pairs + 1}")
            if int(offsets[0]) != 0 or int(offsets[-1]) != ids.numel() or bool((offsets[1:] < offsets[:-1]).any()):
                raise ValueError(f"{path}: '{side}_offsets' must rise from 0 to the {ids.numel()} ids")
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
                raise ValueError(f"{path}: a {side} id lies outside the {side} vocabulary (size {vocab})")
        self.ids = {"source": tensors["source_ids"], "target": tensors["target_ids"]}
        self.offsets = {"source": tensors["source_offsets"], "target": tensors["target_offsets"]}


class TokenShards:
    """The pairs of a shard folder, memory-mapped: lengths(side) for the whole corpus, and batch(rows, max_steps) for
    any pairs by global number."""

    def __init__(self, directory):
        path = os.path.join(directory, MANIFEST_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                manifest = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: not found — '{directory}' holds no token shards (run transduce prepare)") from None
        except ValueError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        if manifest.get("format") != SHARDS_FORMAT:
            raise ValueError(f"{path}: not a token-shard manifest (format '{manifest.get('format', 'missing')}', expected '{SHARDS_FORMAT}')")
        if manifest.get("version") != 1:
            raise ValueError(f"{path}: unsupported version {manifest.get('version')} (this package reads version 1)")
        if "corpora" in manifest:
            raise ValueError(f"{path}: the pairs come from several weighted corpora (data.corpora), which this trainer does not sample; train them with transduce train --resume")
        self.manifest = manifest
        self.source_vocab_size = int(manifest["source_vocab_size"])
        self.target_vocab_size = int(manifest["target_vocab_size"])
        self.files = [s["file"] if os.path.isabs(s["file"]) else os.path.join(directory, s["file"]) for s in manifest["shards"]]
        counts = [int(s["pairs"]) for s in manifest["shards"]]
        if sum(counts) != int(manifest["pairs"]):
            raise ValueError(f"{path}: the shards hold {sum(counts)} pairs, the manifest says {manifest['pairs']}")
        self._shards = [_Shard(file, n, self.source_vocab_size, self.target_vocab_size) for file, n in zip(self.files, counts)]
        self._first = torch.tensor([0] + counts, dtype=torch.int64).cumsum(0)   # global number of each shard's first pair
        self._lengths = {side: torch.cat([s.offsets[side][1:] - s.offsets[side][:-1] for s in self._shards])
                         for side in ("source", "target")}

    def __len__(self):
        return int(self._first[-1])

    def lengths(self, side):
        """Token counts (without <eos>) of every pair of one side, int64."""
        return self._lengths[side]

    def rows(self, side, rows):
        """(ids padded with PAD_ID, (len(rows), longest) int64; lengths) of the given pairs of one side."""
        rows = torch.as_tensor(rows, dtype=torch.int64)
        lengths = self._lengths[side][rows]
        out = torch.full((len(rows), max(1, int(lengths.max())) if len(rows) else 1), PAD_ID, dtype=torch.int64)
        shard_of = torch.searchsorted(self._first, rows, right=True) - 1
        for k in shard_of.unique().tolist():
            pick = (shard_of == k).nonzero().view(-1)
            local = rows[pick] - self._first[k]
            shard = self._shards[k]
            starts = shard.offsets[side][local]
            n = lengths[pick]
            width = max(1, int(n.max()))
            steps = torch.arange(width, dtype=torch.int64)
            index = (starts.unsqueeze(1) + steps).clamp(max=max(0, shard.ids[side].numel() - 1))
            taken = steps < n.unsqueeze(1)
            values = shard.ids[side][index].to(torch.int64) if shard.ids[side].numel() else torch.zeros_like(index)
            out[pick, :width] = torch.where(taken, values, torch.full_like(values, PAD_ID))
        return out, lengths

    def batch(self, rows, max_steps):
        """Batching.Build for the given pairs: rows with <eos> (cut to max_steps), padded to the longest row."""
        source, source_lengths = self._with_eos(*self.rows("source", rows), max_steps)
        labels, target_lengths = self._with_eos(*self.rows("target", rows), max_steps)
        bos = torch.full((labels.shape[0], 1), BOS_ID, dtype=torch.int64)
        target_input = torch.cat([bos, labels[:, :-1]], 1)
        return Batch(source, source_lengths.clamp(min=1), target_input, labels,
                     int(target_lengths.sum()), labels.shape[0] * labels.shape[1])

    @staticmethod
    def _with_eos(ids, lengths, max_steps):
        cut = lengths_with_eos(lengths, max_steps)
        steps = max(1, int(cut.max())) if len(cut) else 1
        width = min(steps, ids.shape[1])
        out = torch.full((ids.shape[0], steps), PAD_ID, dtype=torch.int64)
        positions = torch.arange(steps, dtype=torch.int64).unsqueeze(0)
        keep = positions[:, :width] < torch.minimum(lengths, cut).unsqueeze(1)
        out[:, :width] = torch.where(keep, ids[:, :width], out[:, :width])
        # <eos> right after the ids, unless the cut fell on it
        has_eos = cut == lengths + 1
        out[has_eos.nonzero().view(-1), lengths[has_eos]] = EOS_ID
        return out, cut
