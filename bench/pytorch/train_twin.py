"""The PyTorch side of `Transduce.Bench train`: the same training step on the same batches, timed.

Transduce.Bench writes the batches its Trainer will draw (safetensors: "<i>.source", "<i>.source_lengths",
"<i>.target_input", "<i>.target_output") and the run's settings (config.json: "model" as in a checkpoint, plus
"lr", "warmup_updates", "label_smoothing", "clip"). This script builds the model (python/transduce_torch/model.py), trains it with the
same optimiser, schedule, loss and clipping as src/Transduce/Training/Trainer.cs, times updates warmup+1 … warmup+steps
and prints one JSON object: {"seconds": …, "tokens": …, "loss": the last update's loss, "torch": version,
"threads": …, "precision": …, and unless --no-peak "matmul_gflops" / "matmul_gflops_bf16": its own fp32 and bf16
matmul peaks on the same threads, which tell library speed apart from framework overhead}.

--precision bf16 runs the forward pass under torch.autocast("cpu", dtype=torch.bfloat16) and the loss in float32,
as Transduce's TrainingOptions.Precision = BFloat16 does (model.masked_softmax normalises bf16 scores in float32).

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


def matmul_peak(dtype=torch.float32, seconds=2.0):
    """Best GFLOP/s of square matmuls in `dtype` on the current threads (as Transduce.Bench measures its own peak)."""
    best = 0.0
    with torch.no_grad():
        for n in (512, 1024, 1536, 2048):
            a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
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
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--no-peak", action="store_true", help="skip measuring the matmul peaks")
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
    bf16 = args.precision == "bf16"
    # the Trainer's "inverse-sqrt" schedule: linear warm-up to the peak, then 1/sqrt(step)
    schedule = TrainingOptions({"learning_rate": settings["lr"], "schedule": "inverse-sqrt", "warmup_steps": settings["warmup_updates"]})

    tokens = 0
    started = None
    last_loss = float("nan")
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
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(source, lengths, target_input)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target_output.reshape(-1),
                               ignore_index=pad, label_smoothing=settings["label_smoothing"])
        loss.backward()
        last_loss = loss.item()  # the Trainer reads the loss every update too
        if settings["clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings["clip"])
        optimizer.step()
        if b >= args.warmup:
            tokens += int((target_output != pad).sum())
    seconds = time.perf_counter() - started
    result = {"seconds": seconds, "tokens": tokens, "loss": last_loss, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "precision": args.precision}
    if not args.no_peak:
        result["matmul_gflops"] = matmul_peak(torch.float32)
        result["matmul_gflops_bf16"] = matmul_peak(torch.bfloat16)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
