"""Train a prepared Transduce run with PyTorch DistributedDataParallel (torchrun: NCCL on GPUs, gloo on CPUs).

    transduce prepare --data corpus.tsv --model transformer ... --out PREP          # .NET: tokenize, initialise
    torchrun --nproc_per_node N -m transduce_torch.train PREP --out RUN           # this module
    transduce translate --model RUN "..."                                          # .NET: use it

It trains exactly as Transduce's Trainer (src/Transduce/Training/Trainer.cs) with the settings of PREP/train.json:
the batches of every epoch (seeded; length-bucketed or plain), masked cross-entropy with label smoothing averaged over
the update's target tokens, Adam, the learning-rate schedule, gradient-norm clipping and accumulation. Each update's
batch is the one the .NET Trainer would take; every rank computes the loss of an interleaved share of its rows
(rows r, r + N, …) and the gradients are averaged so that the update is that of the whole batch, whatever N is.
Rank 0 writes RUN as a Transduce checkpoint (model.safetensors with Transduce's parameter names, config.json, the
vocabularies and subword model, train.json, trainer.json with the position and loss curve), atomically, at every epoch
end, every save_every_steps updates and when stopped. RUN/data/shards.json names the shards it was trained on.

    torchrun ... -m transduce_torch.train --resume RUN     # continue RUN (also a checkpoint of `transduce train --resume PREP`)
    transduce train --resume RUN                           # continue it in .NET (weights and position; Adam starts afresh)
    torchrun ... -m transduce_torch.train PREP --out RUN --init CKPT   # start from the weights of a .NET checkpoint
"""

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import time

import torch
import torch.distributed as dist
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from . import __version__
from .checkpoint import (WEIGHTS_FILE, atomic_write, load_weights, read_config, read_json, recover, save_checkpoint,
                         write_json)
from .data import MANIFEST_FILE, TokenShards, bucketed_epoch, chunk, chunked_epoch_order, lengths_with_eos
from .model import build_model, model_config

SHARDS_FOLDER = "data"
SETTINGS_FILE, TRAINER_FILE, STATE_FILE = "train.json", "trainer.json", "torch_state.pt"
CURVE_WINDOW = 10   # the loss curve holds the mean of every 10 updates, as `transduce train` records it


class TrainingOptions:
    """The "training" section of train.json (the run configuration, src/Transduce/Training/RunConfig.cs), with its defaults."""

    def __init__(self, d):
        self.epochs = int(d.get("epochs", 30))
        self.batch_size = int(d.get("batch_size", 128))
        self.learning_rate = float(d.get("learning_rate", 0.005))
        self.gradient_clip = float(d.get("gradient_clip", 1.0))
        self.label_smoothing = float(d.get("label_smoothing", 0.0))
        self.seed = int(d.get("seed", 0))
        self.max_tokens = d.get("max_tokens")
        self.bucketed = bool(d.get("bucketed", False)) or self.max_tokens is not None   # max_tokens implies buckets
        self.max_updates = d.get("max_updates")
        self.schedule = d.get("schedule", "constant")
        self.warmup_steps = int(d.get("warmup_steps", 4000))
        self.accumulate_steps = int(d.get("accumulate_steps", 1))
        self.save_every_steps = d.get("save_every_steps")
        self.time_limit = parse_duration(d.get("time_limit"))
        self.precision = d.get("precision", "float32")
        if self.precision not in ("float32", "bfloat16", "auto"):
            raise ValueError(f"training.precision '{self.precision}': this trainer computes in float32 or bfloat16 (or auto: the faster)")
        if self.schedule not in ("constant", "inverse-sqrt"):
            raise ValueError(f"unknown learning-rate schedule '{self.schedule}' (known: constant, inverse-sqrt)")
        if self.accumulate_steps < 1 or self.batch_size < 1:
            raise ValueError("accumulate_steps and batch_size must be at least 1")


BFLOAT16_MARGIN = 1.2   # TrainingPrecisions.BFloat16Margin


def matmul_gflops(dtype, device, seconds=0.1, n=1024, windows=4):
    """The best GFLOP/s of n × n matmuls in dtype over a few short windows after a warm-up (TrainingPrecisions.Measure)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        a, b = torch.randn(n, n).to(device, dtype), torch.randn(n, n).to(device, dtype)
        a.mm(b)
        sync()
        best = 0.0
        for _ in range(windows):
            calls, start = 0, time.perf_counter()
            while True:
                a.mm(b)
                calls += 1
                sync()
                if time.perf_counter() - start >= seconds / windows:
                    break
            best = max(best, 2.0 * n ** 3 * calls / (time.perf_counter() - start) / 1e9)
    return best


def choose_precision(float32_gflops, bfloat16_gflops):
    """TrainingPrecisions.Choose: bfloat16 when its matmuls are at least BFLOAT16_MARGIN× as fast as float32's."""
    return "bfloat16" if float32_gflops > 0 and bfloat16_gflops >= BFLOAT16_MARGIN * float32_gflops else "float32"


def resolve_precision(precision, dist_):
    """'auto' measured on rank 0 and sent to every rank, so that all ranks compute alike; other values as they are."""
    if precision != "auto":
        return precision
    flag = torch.zeros(1, dtype=torch.int64)
    if dist_.rank == 0:
        f32, bf16 = matmul_gflops(torch.float32, dist_.device), matmul_gflops(torch.bfloat16, dist_.device)
        flag[0] = 1 if choose_precision(f32, bf16) == "bfloat16" else 0
        print(f"precision auto: matmuls {bf16:,.0f} GFLOP/s in bfloat16, {f32:,.0f} in float32", flush=True)
    flag = dist_.sum_(flag)   # rank 0's choice, on every rank
    return "bfloat16" if int(flag[0]) == 1 else "float32"


def learning_rate(options, step):
    """Trainer.LearningRate: constant, or inverse-sqrt (linear warm-up to the peak, then ∝ 1/√step)."""
    if options.schedule == "constant":
        return options.learning_rate
    warmup = max(1, options.warmup_steps)
    return options.learning_rate * min(step / warmup, math.sqrt(warmup / max(1, step)))


def parse_duration(value):
    """Seconds of a run configuration's duration ("90m", "1.5h", "45s" or "hh:mm:ss"), or None."""
    if value is None:
        return None
    text = str(value).strip()
    units = {"s": 1, "m": 60, "h": 3600}
    if len(text) > 1 and text[-1].lower() in units:
        try:
            return float(text[:-1]) * units[text[-1].lower()]
        except ValueError:
            pass
    return parse_timespan(text)


def parse_timespan(value):
    """Seconds of a .NET TimeSpan as System.Text.Json writes it ("[d.]hh:mm:ss[.fffffff]"), or None."""
    if value is None:
        return None
    days, _, clock = value.rpartition(".") if value.count(":") == 2 and "." in value.split(":")[0] else ("", "", value)
    h, m, s = clock.split(":")
    return (int(days) if days else 0) * 86400 + int(h) * 3600 + int(m) * 60 + float(s)


def format_timespan(seconds):
    """A TimeSpan as System.Text.Json reads it: [d.]hh:mm:ss.fffffff."""
    ticks = int(round(seconds * 10_000_000))
    days, ticks = divmod(ticks, 86400 * 10_000_000)
    h, ticks = divmod(ticks, 3600 * 10_000_000)
    m, ticks = divmod(ticks, 60 * 10_000_000)
    s, fraction = divmod(ticks, 10_000_000)
    return (f"{days}." if days else "") + f"{h:02d}:{m:02d}:{s:02d}.{fraction:07d}"


class Position:
    """TrainingPosition: where a run stands (1-based epoch in progress, its batches done, updates, tokens…)."""

    FIELDS = ("epoch", "batches_done", "step", "tokens", "positions", "elapsed_seconds", "epoch_loss_sum", "epoch_tokens")

    def __init__(self, epoch=1, batches_done=0, step=0, tokens=0, positions=0, elapsed_seconds=0.0, epoch_loss_sum=0.0,
                 epoch_tokens=0, epochs=None):
        self.epoch, self.batches_done, self.step = epoch, batches_done, step
        self.tokens, self.positions, self.elapsed_seconds = tokens, positions, elapsed_seconds
        self.epoch_loss_sum, self.epoch_tokens = epoch_loss_sum, epoch_tokens
        self.epochs = list(epochs or [])   # [{"epoch", "loss", "elapsed" (seconds)}]

    def to_json(self):
        d = {f: getattr(self, f) for f in self.FIELDS}
        d["epochs"] = [{"epoch": e["epoch"], "loss": e["loss"], "elapsed": format_timespan(e["elapsed"])} for e in self.epochs]
        return d

    @classmethod
    def from_json(cls, d):
        epochs = [{"epoch": e["epoch"], "loss": e["loss"], "elapsed": parse_timespan(e["elapsed"])} for e in d.get("epochs", [])]
        return cls(**{f: d[f] for f in cls.FIELDS}, epochs=epochs)


class Distributed:
    """The process group when launched by torchrun (RANK, WORLD_SIZE, LOCAL_RANK set), else one plain process."""

    def __init__(self, backend):
        self.launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ
        self.rank = int(os.environ.get("RANK", 0))
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.local_world = int(os.environ.get("LOCAL_WORLD_SIZE", self.world))
        cuda = torch.cuda.is_available()
        self.device = torch.device(f"cuda:{self.local_rank}") if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(self.device)
        self.backend = backend or ("nccl" if cuda else "gloo")
        if self.launched:
            dist.init_process_group(self.backend)

    def sum_(self, tensor):
        """Sums a small CPU tensor over the ranks (on the GPU for NCCL) and returns it on the CPU."""
        if not self.launched or self.world == 1:
            return tensor
        on = tensor.to(self.device) if self.backend == "nccl" else tensor
        dist.all_reduce(on)
        return on.cpu()

    def gather(self, value):
        if not self.launched or self.world == 1:
            return [value]
        values = [None] * self.world
        dist.all_gather_object(values, value)
        return values

    def close(self):
        if self.launched:
            dist.destroy_process_group()


class Run:
    """What a run reads: the model and text configuration (config.json), the run settings (train.json) and the shards."""

    def __init__(self, directory, shards_directory=None):
        recover(directory)
        self.directory = directory
        self.config = read_config(directory)
        self.settings = read_json(os.path.join(directory, SETTINGS_FILE))
        if not isinstance(self.settings.get("training"), dict) or not isinstance(self.settings.get("model"), dict):
            raise ValueError(f"{os.path.join(directory, SETTINGS_FILE)}: not a run configuration with 'model' and 'training' sections "
                             f"(write the folder with transduce prepare)")
        self.shards_directory = shards_directory or os.path.join(directory, SHARDS_FOLDER)
        self.shards = TokenShards(self.shards_directory)
        model = self.config["model"]
        if (self.shards.source_vocab_size, self.shards.target_vocab_size) != (model["source_vocab_size"], model["target_vocab_size"]):
            raise ValueError(f"{self.shards_directory}: shards were encoded with vocabularies of {self.shards.source_vocab_size}/"
                             f"{self.shards.target_vocab_size} tokens, {directory}/config.json has {model['source_vocab_size']}/"
                             f"{model['target_vocab_size']}")
        text = self.config.get("text") or {}
        positions = model.get("max_positions", 1024) if model["architecture"] == "transformer" else None
        cuts = [m for m in (text.get("max_steps"), positions) if m is not None]
        self.max_steps = min(cuts) if cuts else None   # Batching.MinLimit(text max_steps, model's longest sequence)


def same_text_side(a, b):
    """Names what differs between two checkpoint folders' model configuration and vocabularies, or None."""
    ca, cb = read_config(a), read_config(b)
    if model_config(ca["model"]) != model_config(cb["model"]):
        return "model configuration"
    if (ca.get("text") or {}) != (cb.get("text") or {}):
        return "text configuration"
    for file in ("source.vocab.json", "target.vocab.json"):
        with open(os.path.join(a, file), "rb") as fa, open(os.path.join(b, file), "rb") as fb:
            if json.load(fa) != json.load(fb):
                return file
    return None


class Trainer:
    def __init__(self, args, dist_):
        self.args, self.dist = args, dist_
        self.resuming = args.resume is not None
        out = args.resume or args.out
        if self.resuming:
            manifest = os.path.join(out, SHARDS_FOLDER)
            self.run = Run(out, manifest)
            self.out = out
        else:
            if os.path.exists(os.path.join(args.out, TRAINER_FILE)) and os.path.abspath(args.out) != os.path.abspath(args.prepared):
                raise ValueError(f"{args.out} already holds a run: continue it with --resume {args.out}, or choose another --out")
            self.run = Run(args.prepared)
            self.out = args.out
        settings = self.run.settings
        options = dict(settings["training"])
        if args.epochs is not None:
            options["epochs"] = args.epochs
        if args.save_every is not None:
            options["save_every_steps"] = args.save_every
        if args.time_limit is not None:
            options["time_limit"] = f"{args.time_limit!r}m"
        settings = dict(settings, training=options)
        self.settings = settings
        self.options = TrainingOptions(options)
        # Fine-tuning conventions of the .NET trainer this one does not implement: refused, never silently ignored.
        if options.get("freeze"):
            raise ValueError(f"training.freeze {options['freeze']}: this trainer does not freeze parameters; "
                             "fine-tune with `transduce train --init` instead")
        encoding = self.run.config.get("pair_encoding", "default")
        if encoding != "default":
            raise ValueError(f"config.json: pair_encoding '{encoding}' (a pretrained family's training conventions) is not "
                             "implemented by this trainer; fine-tune with `transduce train --init` instead")

        self.model = build_model(self.run.config["model"])
        start = self.run.directory
        if args.init is not None:
            recover(args.init)
            differs = same_text_side(args.init, self.run.directory)
            if differs is not None:
                raise ValueError(f"{args.init}: its {differs} differs from {self.run.directory}'s; prepare the data with the "
                                 f"checkpoint's settings (same corpus, flags and seed) to start from it")
            start = args.init
        load_weights(self.model, os.path.join(start, WEIGHTS_FILE))
        self.model.to(dist_.device)
        self.model.train()
        self.net = (DistributedDataParallel(self.model, device_ids=[dist_.device.index] if dist_.device.type == "cuda" else None,
                                            broadcast_buffers=False)
                    if dist_.launched else self.model)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.options.learning_rate)

        self.position, self.curve = Position(), []
        state_path = os.path.join(out, STATE_FILE)
        if self.resuming:
            trainer = read_json(os.path.join(out, TRAINER_FILE))
            self.position = Position.from_json(trainer["position"])
            self.curve = [list(p) for p in trainer.get("curve", [])]
            if os.path.exists(state_path):
                state = torch.load(state_path, map_location="cpu")
                self.optimizer.load_state_dict(state["optimizer"])
                rng = state.get("rng") or []
                if len(rng) == dist_.world:
                    torch.set_rng_state(rng[dist_.rank])
                else:
                    torch.manual_seed(self.options.seed + 1000 * self.position.step + dist_.rank)
            else:
                # A checkpoint of the .NET trainer: its weights and position; Adam starts afresh (as in the other direction).
                torch.manual_seed(self.options.seed + 1000 * self.position.step + dist_.rank)
                if dist_.rank == 0 and self.position.step > 0:
                    print(f"{state_path}: not found — the optimiser's moments start afresh (weights and position are the checkpoint's)",
                          flush=True)
        else:
            torch.manual_seed(self.options.seed + dist_.rank)   # dropout masks: one stream per rank

        shards = self.run.shards
        self.source_lengths = lengths_with_eos(shards.lengths("source"), self.run.max_steps)
        self.target_lengths = lengths_with_eos(shards.lengths("target"), self.run.max_steps)
        self._source_list, self._target_list = self.source_lengths.tolist(), self.target_lengths.tolist()
        self.stop_requested = False
        self.log = open(args.log, "a", encoding="utf-8") if args.log and dist_.rank == 0 else None

    def epoch_batches(self, epoch):
        o = self.options
        if o.bucketed:
            return bucketed_epoch(self._source_list, self._target_list, o.batch_size, o.max_tokens, o.seed, epoch)
        return chunk(chunked_epoch_order(len(self._source_list), o.seed, epoch), o.batch_size)

    def train(self):
        o, d, shards = self.options, self.dist, self.run.shards
        pad = self.run.config["model"].get("pad_id", 0)
        batches_per_epoch = len(self.epoch_batches(1))
        total_steps = batches_per_epoch * o.epochs // o.accumulate_steps
        at = self.position
        epochs = list(at.epochs)
        tokens, positions, step = at.tokens, at.positions, at.step
        loss_sum, epoch_tokens = at.epoch_loss_sum, at.epoch_tokens
        session_updates, window, window_steps = 0, 0.0, 0
        clock = time.perf_counter()

        def elapsed():
            return at.elapsed_seconds + time.perf_counter() - clock

        stop = False
        o.precision = resolve_precision(o.precision, d)
        if d.rank == 0:
            print(f"train {self.run.directory}: {len(shards):,} pairs, {sum(p.numel() for p in self.model.parameters()):,} parameters, "
                  f"{d.world} rank(s) ({d.backend}, {d.device.type}, {torch.get_num_threads()} threads each), "
                  f"{total_steps:,} updates in {o.epochs} epochs; from update {step}", flush=True)
        epoch = at.epoch
        while epoch <= o.epochs and not stop:
            batches = self.epoch_batches(epoch)
            first = at.batches_done if epoch == at.epoch else 0
            if epoch != at.epoch:
                loss_sum, epoch_tokens = 0.0, 0
            pending, done, pending_loss = 0, first, 0.0
            for b in range(first, len(batches)):
                done = b + 1
                rows = batches[b]
                index = torch.tensor(rows, dtype=torch.int64)
                batch_tokens = int(self.target_lengths[index].sum())
                batch_positions = len(rows) * max(1, int(self.target_lengths[index].max()))
                mine = rows[d.rank::d.world]
                if pending == 0:
                    self.optimizer.zero_grad()
                closes_update = pending + 1 == o.accumulate_steps or b + 1 == len(batches)
                sync = contextlib.nullcontext() if closes_update or not d.launched else self.net.no_sync()
                with sync:
                    batch = shards.batch(mine or rows[:1], self.run.max_steps).to(d.device)
                    # bfloat16: matmuls under autocast, the loss (and the weights, Adam's moments) in float32, as the Trainer does
                    with torch.autocast(d.device.type, dtype=torch.bfloat16, enabled=o.precision == "bfloat16"):
                        logits = self.net(batch.source, batch.valid_lengths, batch.target_input)
                    summed = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch.target_output.reshape(-1),
                                             ignore_index=pad, label_smoothing=o.label_smoothing, reduction="sum")
                    if not mine:
                        summed = summed * 0.0   # a rank without rows still takes part in the gradient average
                    # DDP averages over ranks: scaled so, the update's gradient is that of the batch's mean loss (÷ accumulation)
                    (summed * (d.world / batch_tokens / o.accumulate_steps)).backward()
                # One small collective: the batch's loss sum and whether any rank was asked to stop.
                shared = d.sum_(torch.stack([summed.detach().float().cpu(), torch.tensor(1.0 if self.stop_requested else 0.0)]))
                loss = float((shared[0] / batch_tokens).to(torch.float32))
                stop_now = bool(shared[1] > 0)
                if not math.isfinite(loss):
                    raise FloatingPointError(f"update {step + 1}: the loss is {loss}; lower the learning rate or check the data")
                tokens += batch_tokens
                epoch_tokens += batch_tokens
                positions += batch_positions
                loss_sum += loss * batch_tokens
                pending_loss += loss
                pending += 1
                if pending < o.accumulate_steps and b + 1 < len(batches):
                    continue

                step += 1
                session_updates += 1
                lr = learning_rate(o, step)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                if o.gradient_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), o.gradient_clip)
                self.optimizer.step()
                now = elapsed()
                update_loss = pending_loss / pending
                window += update_loss
                window_steps += 1
                if window_steps >= CURVE_WINDOW or step == total_steps:
                    self.curve.append([step * o.epochs / max(1, total_steps), window / window_steps])
                    window, window_steps = 0.0, 0
                self.report(epoch, step, total_steps, update_loss, lr, tokens, now)
                pending, pending_loss = 0, 0.0
                last = b + 1 == len(batches)
                if not last and o.save_every_steps and step % o.save_every_steps == 0:
                    self.save(Position(epoch, b + 1, step, tokens, positions, now, loss_sum, epoch_tokens, epochs))
                if (o.time_limit is not None and d.sum_(torch.tensor([1.0 if now >= o.time_limit else 0.0]))[0] > 0) or stop_now \
                        or (self.args.max_updates is not None and session_updates >= self.args.max_updates) \
                        or (o.max_updates is not None and step >= o.max_updates):
                    stop = True
                    break
            now = elapsed()
            epochs.append({"epoch": epoch, "loss": loss_sum / max(1, epoch_tokens), "elapsed": now})
            if d.rank == 0:
                print(f"epoch {epoch}: loss {epochs[-1]['loss']:.4f}, {tokens / max(1e-9, now):,.0f} target tokens/s", flush=True)
            finished = done == len(batches)
            position = (Position(epoch + 1, 0, step, tokens, positions, now, 0.0, 0, epochs) if finished
                        else Position(epoch, done, step, tokens, positions, now, loss_sum, epoch_tokens, epochs[:-1]))
            self.save(position)
            epoch += 1
        if d.rank == 0:
            now = elapsed()
            print(f"done: {step:,} updates, {tokens / max(1e-9, now):,.0f} target tokens/s over the run"
                  f"{' (stopped)' if stop else ''}; checkpoint: {self.out}", flush=True)

    def report(self, epoch, step, total, loss, lr, tokens, elapsed):
        if self.dist.rank != 0:
            return
        if self.log is not None:
            self.log.write(json.dumps({"step": step, "epoch": epoch, "loss": loss, "lr": lr, "tokens": tokens,
                                       "elapsed": elapsed}) + "\n")
            self.log.flush()
        every = self.args.progress_every
        if every and (step % every == 0 or step == total):
            print(f"update {step}/{total} (epoch {epoch}): loss {loss:.4f}, lr {lr:.3g}, "
                  f"{tokens / max(1e-9, elapsed):,.0f} target tokens/s", flush=True)

    def save(self, position):
        """Rank 0 writes the checkpoint (every rank holds the same weights); all ranks' generator states go with it."""
        rng = self.dist.gather(torch.get_rng_state())
        if self.dist.rank != 0:
            return
        last = position.epochs[-1] if position.epochs else None
        config = dict(self.run.config)
        config["training"] = {
            "corpus": os.path.basename(os.path.abspath(self.run.shards_directory)), "pairs": str(len(self.run.shards)),
            "preset": str(self.settings.get("preset", "custom")), "seed": str(self.options.seed),
            "epochs_done": str(len(position.epochs)), "updates": str(position.step),
            "train_loss": f"{last['loss']:.4f}" if last else "NaN",
            "train_seconds": f"{position.elapsed_seconds:.1f}",
            "tokens_per_second": f"{position.tokens / max(1e-9, position.elapsed_seconds):.0f}",
            "padding_fraction": f"{(1 - position.tokens / position.positions) if position.positions else 0:.3f}",
            "trainer": f"transduce-torch {__version__} (PyTorch {torch.__version__}, DDP {self.dist.world} × {self.dist.device.type})",
        }
        state = {"optimizer": self.optimizer.state_dict(), "rng": rng, "world_size": self.dist.world}

        def extras(directory):
            write_json(os.path.join(directory, SETTINGS_FILE), self.settings)
            write_json(os.path.join(directory, TRAINER_FILE), {"position": position.to_json(), "curve": self.curve, "validations": []})
            self.write_shard_reference(os.path.join(directory, SHARDS_FOLDER))
            atomic_write(os.path.join(directory, STATE_FILE), lambda f: torch.save(state, f))

        save_checkpoint(self.out, self.model.state_dict(), config, extras, copy_from=self.run.directory)

    def write_shard_reference(self, directory):
        """RUN/data/shards.json: the prepared manifest with each shard named by its absolute path. Not when the shards
        are RUN's own (training in the prepared folder): save_checkpoint then carries that data/ folder over."""
        own = os.path.join(self.out, SHARDS_FOLDER)
        if os.path.isdir(own) and os.path.samefile(own, self.run.shards_directory):
            return
        manifest = dict(self.run.shards.manifest)
        manifest["shards"] = [{"file": os.path.abspath(file), "pairs": s["pairs"]}
                              for file, s in zip(self.run.shards.files, manifest["shards"])]
        os.makedirs(directory, exist_ok=True)
        write_json(os.path.join(directory, MANIFEST_FILE), manifest)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python3 -m transduce_torch.train",
                                     description="Train a prepared Transduce run with PyTorch DDP (launch with torchrun).")
    parser.add_argument("prepared", nargs="?", help="folder written by `transduce prepare` (not with --resume)")
    parser.add_argument("--out", help="checkpoint folder to write")
    parser.add_argument("--resume", metavar="RUN", help="continue the run in this checkpoint folder")
    parser.add_argument("--init", metavar="CHECKPOINT", help="start from this Transduce checkpoint's weights (same model and vocabularies)")
    parser.add_argument("--epochs", type=int, help="override the run's epochs")
    parser.add_argument("--save-every", type=int, help="override the run's save_every_steps")
    parser.add_argument("--time-limit", type=float, metavar="MINUTES", help="override the run's time limit")
    parser.add_argument("--max-updates", type=int, help="stop (and save) after this many updates of this session")
    parser.add_argument("--threads", type=int, help="intra-op threads per rank on CPU (default: cores / local ranks)")
    parser.add_argument("--backend", choices=["gloo", "nccl", "mpi"], help="process-group backend (default: nccl with CUDA, else gloo)")
    parser.add_argument("--log", metavar="FILE", help="append one JSON line per update (step, epoch, loss, lr, tokens, elapsed)")
    parser.add_argument("--progress-every", type=int, default=50, help="print progress every N updates (0: never)")
    args = parser.parse_args(argv)
    if args.resume is None and (args.prepared is None or args.out is None):
        parser.error("give the prepared folder and --out RUN (or --resume RUN)")
    if args.resume is not None and (args.prepared is not None or args.out is not None or args.init is not None):
        parser.error("--resume RUN takes everything from RUN (no prepared folder, --out or --init)")
    return args


def main(argv=None):
    args = parse_args(argv)
    d = Distributed(args.backend)
    try:
        if d.device.type == "cpu":
            torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // max(1, d.local_world)))
        trainer = Trainer(args, d)

        def request_stop(signum, frame):
            trainer.stop_requested = True
        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        trainer.train()
    except (ValueError, FileNotFoundError, FloatingPointError) as e:
        print(f"error (rank {d.rank}): {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        d.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
