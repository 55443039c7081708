"""Embedder graph variants the benchmark compares with the served int8 graph.

Experiments, not shipped: `bench_embedding.py` builds each from the cached
export, times it beside the served graph and reports its fidelity. Two levers:

- `matmul_nbits_8bit`: every constant-weight MatMul of the fp32 graph becomes
  onnxruntime's `MatMulNBits` (com.microsoft) with 8-bit weights, one scale per
  block of `block_size` along K, and `accuracy_level=4` (activations quantized
  to int8 per block of each row inside the kernel: per token, like
  `training.rowquant`, in one op instead of ~11).
- `multi_head_attention`: each layer's attention core (Q/K/V reshapes,
  transposes, the two batched MatMuls, the scale, the additive mask and the
  softmax) becomes one `MultiHeadAttention` (com.microsoft) with the Q/K/V
  biases folded into it; applied to the fp32 graph and then quantized per token
  as served.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.rowquant import CONTRIB_DOMAIN, save_rewritten


def matmul_nbits_8bit(source: Path, target: Path, *, block_size: int = 128) -> int:
    """Write `target`: `source` with each 2-D constant-weight MatMul as an 8-bit
    `MatMulNBits`. Returns how many were replaced."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    weights = {tensor.name: tensor for tensor in graph.initializer}
    nodes, count = [], 0
    for node in graph.node:
        weight = weights.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None or len(weight.dims) != 2:
            nodes.append(node)
            continue
        matrix = numpy_helper.to_array(weight).astype(np.float32)  # [K, N]
        inner, outer = matrix.shape
        blocks = -(-inner // block_size)
        padded = np.pad(matrix.T, ((0, 0), (0, blocks * block_size - inner))).reshape(outer, blocks, block_size)
        scale = np.maximum(np.abs(padded).max(axis=2), 1e-12) / 127.0  # [N, blocks]
        # uint8 with the kernel's default zero point for 8 bits, 128.
        quantized = (np.clip(np.round(padded / scale[:, :, None]), -127, 127) + 128).astype(np.uint8)
        name = f"nbits{count}"
        graph.initializer.extend([numpy_helper.from_array(quantized, f"{name}_weight"),
                                  numpy_helper.from_array(scale.reshape(-1).astype(np.float32), f"{name}_scale")])
        nodes.append(helper.make_node(
            "MatMulNBits", [node.input[0], f"{name}_weight", f"{name}_scale"], list(node.output),
            name=name, domain=CONTRIB_DOMAIN, K=inner, N=outer, bits=8, block_size=block_size, accuracy_level=4,
        ))
        count += 1
    save_rewritten(model, nodes, target)
    return count


def multi_head_attention(source: Path, target: Path, *, heads: int = 12) -> int:
    """Write `target`: `source` (the exporter's BERT graph) with each layer's
    attention core as one `MultiHeadAttention`. Returns how many layers."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    weights = {tensor.name: tensor for tensor in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    layers = sorted({int(n.name.split("layer.")[1].split("/")[0]) for n in graph.node if "/attention/self/" in n.name})
    mask = "mha_key_padding_mask"
    added = [helper.make_node("Cast", ["attention_mask"], [mask], to=onnx.TensorProto.INT32)]
    for layer in layers:
        prefix = f"/bert/encoder/layer.{layer}/attention/self"
        projections, biases = [], []
        for part in ("query", "key", "value"):
            add = producers[f"{prefix}/{part}/Add_output_0"]
            bias = next(name for name in add.input if name in weights)
            projections.append(next(name for name in add.input if name not in weights))
            biases.append(numpy_helper.to_array(weights[bias]))
        graph.initializer.append(numpy_helper.from_array(np.concatenate(biases).astype(np.float32), f"mha{layer}_bias"))
        added.append(helper.make_node(
            "MultiHeadAttention", [*projections, f"mha{layer}_bias", mask], [f"{prefix}/Reshape_3_output_0"],
            domain=CONTRIB_DOMAIN, num_heads=heads, name=f"{prefix}/MultiHeadAttention",
        ))
    replaced = {node.output[0] for node in added}
    nodes = [node for node in graph.node if not set(node.output) & replaced] + added
    # Keep what the outputs need, in an order where every input exists first.
    producer = {output: node for node in nodes for output in node.output}
    needed, stack = set(), [output.name for output in graph.output]
    while stack:
        node = producer.get(stack.pop())
        if node is not None and id(node) not in needed:
            needed.add(id(node))
            stack.extend(name for name in node.input if name)
    available = {tensor.name for tensor in graph.input} | {tensor.name for tensor in graph.initializer} | {""}
    pending, ordered = [node for node in nodes if id(node) in needed], []
    while pending:
        ready = [node for node in pending if all(name in available for name in node.input)]
        if not ready:
            raise ValueError("the attention rewrite left a node whose inputs are never produced")
        for node in ready:
            available.update(node.output)
        ordered += ready
        done = {id(node) for node in ready}
        pending = [node for node in pending if id(node) not in done]
    save_rewritten(model, ordered, target)
    return len(layers)
