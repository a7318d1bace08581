"""int8 graphs for the ONNX Runtime twin: every MatMul by a constant weight becomes dynamic int8 quantisation, written
with python3-onnx alone (onnxruntime's own quantize_dynamic is not packaged in Debian).

    python3 quantize_onnx.py --onnx ONNX_DIR --out INT8_DIR

ONNX_DIR is what export_onnx.py wrote (encoder/encoder.onnx, decoder/decoder.onnx, check.json). For every MatMul whose
second input is a 2-D float initializer W (K × N) this writes what onnxruntime.quantization.quantize_dynamic writes:
    DynamicQuantizeLinear(A) → (A_u8, a_scale, a_zero);  MatMulInteger(A_u8, W_s8, a_zero, 0) → int32;
    Cast → float;  Mul by a_scale · w_scale
with W quantised symmetrically per output column (w_scale = max|W[:, n]| / 127), a pattern ORT fuses into
DynamicQuantizeMatMul (MLAS's u8s8 kernels) under ORT_ENABLE_ALL. Embedding lookups, norms and attention stay float32.
check.json is copied for the record but not used: int8 outputs differ from the float module by design.
"""

import argparse
import os
import shutil

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def quantize(model):
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    nodes, count = [], 0
    for node in graph.node:
        weight = initializers.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        if weight is None or len(weight.dims) != 2 or weight.data_type != TensorProto.FLOAT:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weight).astype(np.float32)
        scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / 127.0
        q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
        base = f"{node.name or node.output[0]}_int8_{count}"
        count += 1
        graph.initializer.extend([
            numpy_helper.from_array(q, f"{base}_w"),
            numpy_helper.from_array(np.zeros(1, np.int8), f"{base}_w_zero"),
            numpy_helper.from_array(scale.astype(np.float32), f"{base}_w_scale"),
        ])
        a = node.input[0]
        nodes.extend([
            helper.make_node("DynamicQuantizeLinear", [a], [f"{base}_a", f"{base}_a_scale", f"{base}_a_zero"], name=f"{base}_dq"),
            helper.make_node("MatMulInteger", [f"{base}_a", f"{base}_w", f"{base}_a_zero", f"{base}_w_zero"], [f"{base}_i32"], name=f"{base}_mm"),
            helper.make_node("Cast", [f"{base}_i32"], [f"{base}_f32"], to=TensorProto.FLOAT, name=f"{base}_cast"),
            helper.make_node("Mul", [f"{base}_a_scale", f"{base}_w_scale"], [f"{base}_scale"], name=f"{base}_scale_mul"),
            helper.make_node("Mul", [f"{base}_f32", f"{base}_scale"], [node.output[0]], name=f"{base}_out"),
        ])
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return count


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--onnx", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    for name in ("encoder", "decoder"):
        source = os.path.join(args.onnx, name, f"{name}.onnx")
        model = onnx.load(source)  # external data, when the export wrote it, is read from beside the graph
        count = quantize(model)
        folder = os.path.join(args.out, name)
        os.makedirs(folder, exist_ok=True)
        target = os.path.join(folder, f"{name}.onnx")
        # protobuf cannot serialise 2 GB in one message: past that, the weights go to one file beside the graph.
        large = sum(len(i.raw_data) for i in model.graph.initializer) > 1_800_000_000
        onnx.save_model(model, target, save_as_external_data=large, all_tensors_to_one_file=True, location=f"{name}.data")
        onnx.checker.check_model(target)
        print(f"quantize_onnx.py: {name}: {count} MatMuls int8", flush=True)
    shutil.copy(os.path.join(args.onnx, "check.json"), os.path.join(args.out, "check.json"))


if __name__ == "__main__":
    main()
