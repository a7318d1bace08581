"""Exports a Transduce Transformer checkpoint to ONNX for the ONNX Runtime twin of `Transduce.Bench infer`.

    python3 export_onnx.py --checkpoint DIR --out ONNX_DIR [--opset 17]

The very model of the checkpoint (python/transduce_torch, which loads model.safetensors under Transduce's parameter
names) is traced into two graphs, as Hugging Face's exporters cut a seq2seq model:

encoder/encoder.onnx
    inputs  source (batch, source steps) int64, padded with <pad>; valid_lengths (batch) int64 (<eos> included)
    outputs cross_key_{i}, cross_value_{i} (batch, heads, source steps, head size) float32 for every decoder layer i:
            the cross-attention keys and values, computed once per sentence (TransformerDecoder.init_state)
decoder/decoder.onnx (one step)
    inputs  tokens (rows, 1) int64; valid_lengths (rows) int64; past_key_{i}, past_value_{i} (rows, heads, past, head
            size): the self-attention cache (past = 0 at the first step); cross_key_{i}, cross_value_{i} as the encoder
            wrote them (rows reordered by the caller as beams are)
    outputs logits (rows, target vocabulary) float32 of the new position; present_key_{i}, present_value_{i} (rows,
            heads, past + 1, head size): the cache grown by the new position
Batch, source length and past length are dynamic axes. The step's position is the past length (its shape, read in
the graph), so the graph needs no step counter.

check.json: a small case run through the torch module at other shapes than the trace's (2 sentences of 5 and 3 source
tokens, 4 cached positions, then one step), inputs and outputs, which the C# twin (bench/Transduce.Bench/OrtDecoder.cs)
runs through ONNX Runtime before decoding and holds to 1e-4. Each graph is checked with onnx.checker (python3-onnx)
when that package is installed.
"""

import argparse
import json
import os
import sys
import warnings

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
from transduce_torch.checkpoint import load_checkpoint  # noqa: E402
from transduce_torch.model import BOS_ID, TransformerState, valid_length_mask  # noqa: E402


class EncoderGraph(nn.Module):
    """The encoder and every decoder layer's cross-attention keys and values (TransformerDecoder.init_state)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, source, valid_lengths):
        memory, _ = self.model.encoder(source, valid_lengths)
        out = []
        for block in self.model.decoder.blocks:
            out.extend(block.CrossAttention.project_key_value(memory, memory))
        return tuple(out)


class DecoderStepGraph(nn.Module):
    """One decoder step (TransformerDecoder.forward with one position) over the cache passed in and out as tensors."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.layers = len(model.decoder.blocks)

    def forward(self, tokens, valid_lengths, *caches):
        n = self.layers
        past_keys, past_values = list(caches[0:2 * n:2]), list(caches[1:2 * n:2])
        cross_keys, cross_values = list(caches[2 * n::2]), list(caches[2 * n + 1::2])
        mask = valid_length_mask(valid_lengths, cross_keys[0].shape[2])
        state = TransformerState(mask, cross_keys, cross_values, past_keys, past_values, past_keys[0].shape[2])
        logits, grown = self.model.decoder(tokens, state)
        out = [logits[:, -1]]
        for k, v in zip(grown.self_keys, grown.self_values):
            out.extend((k, v))
        return tuple(out)


def _logical_not(g, x):
    return g.op("Not", x)


def names(layers):
    cache = [f"{kind}_{i}" for i in range(layers) for kind in ("key", "value")]
    return ([f"cross_{c}" for c in cache], [f"past_{c}" for c in cache], [f"present_{c}" for c in cache])


def sources(batch_lengths, vocab, generator):
    steps = max(batch_lengths)
    source = torch.zeros(len(batch_lengths), steps, dtype=torch.int64)
    for row, length in enumerate(batch_lengths):
        source[row, :length] = torch.randint(4, vocab, (length,), generator=generator)
        source[row, length - 1] = 2  # <eos> last, as Batching.BuildSources does
    return source, torch.tensor(batch_lengths, dtype=torch.int64)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--opset", type=int, default=17)
    args = parser.parse_args()

    model = load_checkpoint(args.checkpoint)
    config = model.checkpoint_config["model"]
    if config["architecture"] != "transformer":
        raise SystemExit(f"{args.checkpoint}: the ONNX export covers Transformers, not '{config['architecture']}'")
    model.eval()
    layers = len(model.decoder.blocks)
    heads = model.decoder.blocks[0].SelfAttention.heads
    head_size = model.decoder.blocks[0].SelfAttention.head_size
    cross, past, present = names(layers)
    os.makedirs(args.out, exist_ok=True)
    # A folder per graph: past 2 GB (NLLB-600M) the exporter writes every weight as a file beside the graph, and the two
    # graphs' constant-folded weights could share names.
    encoder_path, decoder_path = os.path.join(args.out, "encoder", "encoder.onnx"), os.path.join(args.out, "decoder", "decoder.onnx")
    for path in (encoder_path, decoder_path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    generator = torch.Generator().manual_seed(1)

    # eval() on the wrappers too: the exporter puts a module back into the mode it found it in, recursively, and a new
    # wrapper starts in training mode (dropout on) — the model inside would come out of the export training.
    encoder, step = EncoderGraph(model).eval(), DecoderStepGraph(model).eval()
    # torch 1.13's exporter has no symbolic for logical_not (the masks' "not valid"); ONNX's Not is the same operation.
    torch.onnx.register_custom_op_symbolic("aten::logical_not", _logical_not, 9)
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about Python ints read from shapes; the check below runs other shapes than the trace's.
        warnings.simplefilter("ignore")
        source, lengths = sources([7, 4, 6], config["source_vocab_size"], generator)
        torch.onnx.export(encoder, (source, lengths), encoder_path, input_names=["source", "valid_lengths"],
                          output_names=cross, opset_version=args.opset, do_constant_folding=True,
                          dynamic_axes={"source": {0: "batch", 1: "source_steps"}, "valid_lengths": {0: "batch"},
                                        **{c: {0: "batch", 2: "source_steps"} for c in cross}})
        kv = encoder(source, lengths)
        pasts = [torch.randn(3, heads, 2, head_size, generator=generator) for _ in range(2 * layers)]
        tokens = torch.randint(4, config["target_vocab_size"], (3, 1), generator=generator)
        torch.onnx.export(step, (tokens, lengths, *pasts, *kv), decoder_path,
                          input_names=["tokens", "valid_lengths", *past, *cross], output_names=["logits", *present],
                          opset_version=args.opset, do_constant_folding=True,
                          dynamic_axes={"tokens": {0: "rows"}, "valid_lengths": {0: "rows"}, "logits": {0: "rows"},
                                        **{p: {0: "rows", 2: "past"} for p in past},
                                        **{p: {0: "rows", 2: "present"} for p in present},
                                        **{c: {0: "rows", 2: "source_steps"} for c in cross}})

        # The check case: other batch, source and past lengths than the trace's, a real prefix decoded by the module.
        source, lengths = sources([5, 3], config["source_vocab_size"], generator)
        kv = encoder(source, lengths)
        state = model.decoder.init_state(model.encoder(source, lengths), lengths)
        prefix = torch.cat([torch.full((2, 1), BOS_ID, dtype=torch.int64),
                            torch.randint(4, config["target_vocab_size"], (2, 3), generator=generator)], 1)
        _, state = model.decoder(prefix, state)
        pasts = [t for k, v in zip(state.self_keys, state.self_values) for t in (k, v)]
        tokens = torch.randint(4, config["target_vocab_size"], (2, 1), generator=generator)
        outputs = step(tokens, lengths, *pasts, *kv)
        # The graph's step against the module's own incremental step from the same state.
        logits, grown = model.decoder(tokens, state)
        if model.training or not torch.allclose(outputs[0], logits[:, -1], atol=1e-5):
            raise SystemExit("export_onnx.py: the step wrapper differs from the module's own step")

    def flat(t):
        return {"shape": list(t.shape), "data": t.reshape(-1).tolist()}

    check = {
        "encoder": {"inputs": {"source": flat(source), "valid_lengths": flat(lengths)},
                    "outputs": {name: flat(t) for name, t in zip(cross, kv)}},
        "decoder": {"inputs": {"tokens": flat(tokens), "valid_lengths": flat(lengths),
                               **{name: flat(t) for name, t in zip(past, pasts)},
                               **{name: flat(t) for name, t in zip(cross, kv)}},
                    "outputs": {"logits": flat(outputs[0]), **{name: flat(t) for name, t in zip(present, outputs[1:])}}},
    }
    with open(os.path.join(args.out, "check.json"), "w", encoding="utf-8") as f:
        json.dump(check, f)

    try:
        import onnx  # python3-onnx, optional: the C# side checks the numbers either way
    except ImportError:
        print("export_onnx.py: python3-onnx not installed, graphs not checked with onnx.checker", file=sys.stderr)
    else:
        for path in (encoder_path, decoder_path):
            onnx.checker.check_model(path)
        print(f"export_onnx.py: onnx.checker passed ({onnx.__version__})", file=sys.stderr)
    print(json.dumps({"layers": layers, "heads": heads, "head_size": head_size, "opset": args.opset,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
