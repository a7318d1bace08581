"""The PyTorch side of `Transduce.Bench gemm`: microseconds per float32 linear product (x W^T + b) at the shapes given,
best of five windows, on the threads given. Prints one line per shape: rows in out microseconds."""
import sys
import time

import torch


def best_microseconds(product, seconds=0.2):
    for _ in range(5):
        product()
    best = float("inf")
    for _ in range(5):
        start, calls = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            product()
            calls += 1
        best = min(best, (time.perf_counter() - start) * 1e6 / calls)
    return best


def main():
    torch.set_num_threads(int(sys.argv[1]))
    torch.manual_seed(1)
    with torch.inference_mode():
        for shape in sys.argv[2:]:
            rows, inputs, outputs = (int(v) for v in shape.split("x"))
            x, w, b = torch.randn(rows, inputs), torch.randn(outputs, inputs), torch.randn(outputs)
            print(rows, inputs, outputs, f"{best_microseconds(lambda: torch.nn.functional.linear(x, w, b)):.1f}", flush=True)


if __name__ == "__main__":
    main()
