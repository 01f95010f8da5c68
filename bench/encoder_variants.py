"""Encoder shapes side by side: layers pooled and tokens kept, against encode time and routing quality.

    python bench/encoder_variants.py [--data ../shared/data/routellm/outcomes.jsonl]
        [--variants 6x256h,6x64ht,3x64ht,2x64ht,3x128ht] [--out ~/.cache/difficulty-router/encoder-variants]

A variant `LxTs[fN]` is MiniLM-L6's first L layers, mean-pooled, on at most T tokens, cut at the
head (`h`, as sentence-transformers does) or keeping the first and last halves (`ht`), and with
`fN` only N feed-forward neurons per layer (export.py --ffn-neurons, calibrated on `--data`'s
prompts; without it, all of them). Each is exported
with data/encoders/export.py's code (int8, as the proxy serves it; needs the `train` extra) into
`--out`, once. Then every prompt of the data is encoded alone with one thread, as the proxy does,
timing each call (tokenize and run), and the shipped ensemble (classifiers.selection.ENSEMBLE) is
cross-validated on the vectors: 5 folds, seed 0, the same folds for every variant. Prints per
variant the encode p50 / p99 and APGR by gain and by difficulty per source; the last line is the
figure. Run it alone: the timings share the machine's cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import time
from pathlib import Path
from types import ModuleType

import numpy as np

from classifiers.embedding_cache import default_cache_dir
from classifiers.loaders import load_records
from classifiers.onnx_encoder import OnnxEncoder, is_onnx_encoder_folder
from classifiers.selection import ENSEMBLE, fold_splits, out_of_fold_proba
from classifiers.targets import training_set
from core.metrics import apgr

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "routellm" / "outcomes.jsonl"


VARIANT = re.compile(r"(\d+)x(\d+)(ht|h)(?:f(\d+))?")


def parse_variant(text: str) -> tuple[int, int, str, int]:
    """`3x64ht` -> (3, 64, "head_tail", 0); `1x64htf64` -> (1, 64, "head_tail", 64) (0: every neuron)."""
    found = VARIANT.fullmatch(text)
    if found is None:
        raise SystemExit(
            f"--variants: {text!r} is not LAYERSxTOKENS, then h or ht, then optionally fNEURONS (e.g. 3x64ht, 1x64htf64)"
        )
    layers, tokens, cut, neurons = found.groups()
    return int(layers), int(tokens), "head" if cut == "h" else "head_tail", int(neurons or 0)


def export_script() -> ModuleType:
    """data/encoders/export.py as a module (it is a script beside the data, not part of the package)."""
    spec = importlib.util.spec_from_file_location("export", REPO / "data" / "encoders" / "export.py")
    assert spec is not None and spec.loader is not None
    export = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export)
    return export


def exported(variant: str, out: Path, calibration: Path) -> Path:
    """The variant's encoder folder under `out`, exported on first use (a pruned one calibrated on `calibration`)."""
    folder = out / variant
    if is_onnx_encoder_folder(folder):
        return folder
    layers, tokens, truncation, neurons = parse_variant(variant)
    export_script().export(
        folder, name=f"variant-{variant}", layers=layers, max_tokens=tokens, truncation=truncation,
        ffn_neurons=neurons, calibration=calibration,
    )
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--variants", default="6x256h,6x64ht,3x64ht,2x64ht,3x128ht")
    parser.add_argument("--out", type=Path, default=default_cache_dir() / "encoder-variants")
    args = parser.parse_args()

    data = training_set(load_records(args.data).records)
    weak, strong = data.targets[:, 0], data.targets[:, -1]
    groups = np.array([s.split("/", 1)[0] for s in data.sources])
    splits = fold_splits(data.targets, data.sources, 5, seed=0)
    rows = []
    for variant in (v.strip() for v in args.variants.split(",")):
        encoder = OnnxEncoder(exported(variant, args.out, args.data), threads=1)
        encoder.encode(data.texts[:20])  # load and warm up
        vectors = np.empty((len(data.texts), encoder.dim), dtype=np.float32)
        seconds = np.empty(len(data.texts))
        for row, text in enumerate(data.texts):
            started = time.perf_counter()
            vectors[row] = encoder.encode([text])[0]
            seconds[row] = time.perf_counter() - started
        proba = out_of_fold_proba({**ENSEMBLE, "random_state": 0}, vectors, data.targets, data.sources, splits=splits)
        cells = {}
        for kind, score in (("gain", proba[:, -1] - proba[:, 0]), ("difficulty", 1.0 - proba[:, 0])):
            cells[kind] = " / ".join(f"{apgr(score[groups == g], weak[groups == g], strong[groups == g]):.3f}" for g in ("gsm8k", "mmlu"))
        p50, p99 = (float(np.percentile(seconds, q)) * 1000 for q in (50, 99))
        print(f"{variant:9s} encode p50 {p50:5.2f} ms, p99 {p99:5.2f} ms; 5-fold CV APGR GSM8K / MMLU by gain {cells['gain']}, "
              f"by difficulty {cells['difficulty']}", flush=True)
        rows.append(f"{variant} {p50:.2f}/{p99:.2f} ms {cells['gain']}")
    print("FIGURE encode p50/p99 and APGR by gain GSM8K / MMLU: " + "; ".join(rows))


if __name__ == "__main__":
    main()
