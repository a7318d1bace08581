"""The PyTorch side of `Transduce.Bench train`: the same training step on the same batches, timed.

Transduce.Bench writes the batches its Trainer will draw (safetensors: "<i>.source", "<i>.source_lengths",
"<i>.target_input", "<i>.target_output") and the run's settings (config.json: "model" as in a checkpoint, plus
"lr", "warmup_updates", "label_smoothing", "clip"). This script builds the model (python/transduce_torch/model.py), trains it with the
same optimiser, schedule, loss and clipping as src/Transduce/Training/Trainer.cs, times updates warmup+1 … warmup+steps
and prints one JSON object: {"seconds": …, "tokens": …, "torch": version, "threads": …, "matmul_gflops": its own
fp32 matmul peak on the same threads, which tells library speed apart from framework overhead}.

Run with Debian's python3 (python3-torch): /usr/bin/python3 bench/pytorch/train_twin.py --batches B --config C
"""

import argparse
import json
import os
import sys
import time

import torch
from torch.nn import functional as F

# The model lives in the package python/transduce_torch (used from the checkout).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
from transduce_torch.checkpoint import read_safetensors  # noqa: E402
from transduce_torch.model import build_model  # noqa: E402
from transduce_torch.train import TrainingOptions, learning_rate  # noqa: E402


def matmul_peak(seconds=2.0):
    """Best fp32 GFLOP/s of square matmuls on the current threads (as Transduce.Bench measures its own peak)."""
    best = 0.0
    with torch.no_grad():
        for n in (512, 1024, 1536, 2048):
            a, b = torch.randn(n, n), torch.randn(n, n)
            a.mm(b)
            for _ in range(4):  # the best of four windows, as Transduce.Bench does
                calls, start = 0, time.perf_counter()
                while time.perf_counter() - start < seconds / 4:
                    a.mm(b)
                    calls += 1
                best = max(best, 2.0 * n ** 3 * calls / (time.perf_counter() - start) / 1e9)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    # Debian's torch starts with one intra-op thread; match Transduce's setting exactly.
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    with open(args.config, encoding="utf-8") as f:
        settings = json.load(f)
    batches = read_safetensors(args.batches)
    model = build_model(settings["model"])
    model.train()
    pad = settings["model"]["pad_id"]
    optimizer = torch.optim.Adam(model.parameters(), lr=settings["lr"])
    # the Trainer's "inverse-sqrt" schedule: linear warm-up to the peak, then 1/sqrt(step)
    schedule = TrainingOptions({"learning_rate": settings["lr"], "schedule": "inverse-sqrt", "warmup_steps": settings["warmup_updates"]})

    tokens = 0
    started = None
    for b in range(args.warmup + args.steps):
        if b == args.warmup:
            started = time.perf_counter()
        source = batches[f"{b}.source"]
        lengths = batches[f"{b}.source_lengths"]
        target_input = batches[f"{b}.target_input"]
        target_output = batches[f"{b}.target_output"]
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(schedule, b + 1)
        optimizer.zero_grad()
        logits = model(source, lengths, target_input)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target_output.reshape(-1),
                               ignore_index=pad, label_smoothing=settings["label_smoothing"])
        loss.backward()
        loss.item()  # the Trainer reads the loss every update too
        if settings["clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings["clip"])
        optimizer.step()
        if b >= args.warmup:
            tokens += int((target_output != pad).sum())
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "tokens": tokens, "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "matmul_gflops": matmul_peak()}))


if __name__ == "__main__":
    main()
