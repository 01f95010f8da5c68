"""The exported encoder's graph: residual layer norms as Add + LayerNormalization, kept so at load."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from classifiers.onnx_encoder import UNFUSED_OPTIMIZERS
from classifiers.shipped import SHIPPED_ENCODER, shipped_path
from core.errors import ConfigError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

WIDTH = 16


def skip_layer_norm_model(path: Path, *, bias: bool) -> None:
    """A graph of one SkipLayerNormalization (as onnxruntime's BERT fusion writes it), saved to `path`."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {"gamma": rng.normal(1, 0.1, WIDTH), "beta": rng.normal(0, 0.1, WIDTH), "bias": rng.normal(0, 0.1, WIDTH)}
    inputs = ["x", "skip", "gamma", "beta"] + (["bias"] if bias else [])
    node = helper.make_node("SkipLayerNormalization", inputs, ["y"], name="norm", domain="com.microsoft", epsilon=1e-12)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 4, WIDTH]) for name in ("x", "skip")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, WIDTH])],
        [numpy_helper.from_array(weights[name].astype(np.float32), name) for name in inputs[2:]],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    onnx.save(model, str(path))


def op_types(path: Path) -> list[str]:
    """The op type of each node of the ONNX graph at `path`, in order."""
    return [node.op_type for node in onnx.load(str(path)).graph.node]


def ops_after_load(path: Path, tmp_path: Path, disabled: list[str]) -> list[str]:
    """The op types of the graph onnxruntime runs for `path` once its load-time optimisers are done."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / f"loaded-{len(disabled)}.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
    return op_types(Path(options.optimized_model_filepath))


def run(path: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"], disabled_optimizers=list(UNFUSED_OPTIMIZERS))
    return np.asarray(session.run(None, feed)[0])


@pytest.mark.parametrize("bias", [True, False])
def test_unfused_layer_norm_computes_what_the_fused_one_did(export: ModuleType, tmp_path: Path, bias: bool) -> None:
    path = tmp_path / "model.onnx"
    skip_layer_norm_model(path, bias=bias)
    rng = np.random.default_rng(1)
    feed = {name: rng.normal(0, 2, (1, 4, WIDTH)).astype(np.float32) for name in ("x", "skip")}
    fused = run(path, feed)

    assert export.unfuse_skip_layer_norm(path) == 1

    ops = op_types(path)
    assert "SkipLayerNormalization" not in ops
    assert ops.count("LayerNormalization") == 1
    np.testing.assert_allclose(run(path, feed), fused, atol=1e-5)


def test_the_encoder_keeps_the_graph_unfused_when_onnxruntime_loads_it(export: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    skip_layer_norm_model(path, bias=False)
    export.unfuse_skip_layer_norm(path)

    # Left to itself, onnxruntime fuses Add + LayerNormalization back; with the encoder's list it does not.
    assert "SkipLayerNormalization" in ops_after_load(path, tmp_path, [])
    assert "SkipLayerNormalization" not in ops_after_load(path, tmp_path, list(UNFUSED_OPTIMIZERS))


def test_a_graph_older_than_layer_normalization_is_refused(export: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    skip_layer_norm_model(path, bias=False)
    model = onnx.load(str(path))
    model.opset_import[0].version = 13
    onnx.save(model, str(path))

    with pytest.raises(ConfigError, match="opset 17"):
        export.unfuse_skip_layer_norm(path)


def test_the_shipped_encoder_is_exported_unfused() -> None:
    ops = op_types(shipped_path(SHIPPED_ENCODER) / "model.onnx")
    assert "SkipLayerNormalization" not in ops
    assert ops.count("LayerNormalization") == 2
