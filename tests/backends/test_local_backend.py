"""LocalBackend with the real embedded SmolLM2-135M (short generations), plus model resolution."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import pytest

from router.backends import (
    DEFAULT_LOCAL_MODEL,
    Backend,
    Completion,
    GenerationParams,
    LocalBackend,
    LocalModel,
    LocalModelLoader,
    LocalModelSpec,
    TokenPrice,
    embedded_gguf_path,
    resolve_model_source,
)
from router.backends.local import pick_device
from core.errors import BackendTimeout, BackendUnavailable, ConfigError

QUESTION = [{"role": "user", "content": "What is 7 + 5? Answer with just the number."}]


def prompt_length(model: LocalModel) -> int:
    encoded = model.tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, return_dict=True)
    return len(encoded["input_ids"])


def test_loader_loads_each_spec_once(loader: LocalModelLoader, smollm2: LocalModel) -> None:
    assert loader.load(LocalModelSpec("smollm2")) is smollm2
    assert smollm2.source.embedded and smollm2.device == pick_device("auto")
    assert smollm2.name == "local/smollm2"


def test_sampled_n_share_one_prompt_and_report_logprobs(smollm2: LocalModel) -> None:
    backend = LocalBackend(smollm2, price=TokenPrice(source="gpu_hour", gpu_hour_usd=3.6))
    assert isinstance(backend, Backend)
    params = GenerationParams(n=3, max_tokens=8, temperature=0.8, logprobs=True)
    completions = asyncio.run(backend.generate(QUESTION, params))
    assert len(completions) == 3
    assert [c.usage.input_tokens for c in completions] == [prompt_length(smollm2), 0, 0]
    assert all(1 <= c.usage.output_tokens <= 9 for c in completions)  # 8 new tokens, +1 if EOS came
    for c in completions:
        assert c.mean_logprob is not None and c.mean_logprob < 0 and math.isfinite(c.mean_logprob)
        assert c.finish_reason in ("stop", "length") and c.model == "local/smollm2"
    # $3.60 per GPU-hour is $0.001 per busy second, all on the call's first completion.
    assert completions[0].cost_usd > 0 and completions[1].cost_usd == completions[2].cost_usd == 0
    assert completions[0].cost_usd == pytest.approx(0.001 * completions[0].latency_s, rel=0.5)
    assert len({c.latency_s for c in completions}) == 1


def test_greedy_is_deterministic_and_copies_cost_nothing(smollm2: LocalModel) -> None:
    backend = LocalBackend(smollm2)
    params = GenerationParams(n=2, max_tokens=8)
    first = asyncio.run(backend.generate(QUESTION, params))
    again = asyncio.run(backend.generate(QUESTION, params))  # a second event loop gets a new worker
    assert first[0].text == first[1].text == again[0].text
    assert "12" in first[0].text
    assert first[1].usage.output_tokens == 0 and first[0].usage.output_tokens > 0
    assert first[0].mean_logprob is None and first[0].cost_usd == 0.0


def test_stop_strings_cut_the_text(smollm2: LocalModel) -> None:
    backend = LocalBackend(smollm2)
    [completion] = asyncio.run(backend.generate(QUESTION, GenerationParams(max_tokens=8, stop=("=",))))
    assert "=" not in completion.text and completion.text.strip().startswith("7")
    assert completion.finish_reason == "stop"


def test_concurrent_requests_are_queued_without_blocking_the_loop(smollm2: LocalModel) -> None:
    backend = LocalBackend(smollm2)
    ticks = 0

    async def ticker(stop: asyncio.Event) -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    async def scenario() -> list[list[object]]:
        stop = asyncio.Event()
        tick_task = asyncio.create_task(ticker(stop))
        results = await asyncio.gather(*[backend.generate(QUESTION, GenerationParams(max_tokens=4)) for _ in range(3)])
        stop.set()
        await tick_task
        await backend.aclose()
        return results  # type: ignore[return-value]

    results = asyncio.run(scenario())
    assert len(results) == 3 and all(len(r) == 1 for r in results)
    assert ticks >= 5  # the event loop kept running while the model generated


def test_a_full_queue_refuses_instead_of_piling_up(smollm2: LocalModel) -> None:
    backend = LocalBackend(smollm2, max_queue=1)

    async def scenario() -> list[object]:
        calls = [backend.generate(QUESTION, GenerationParams(max_tokens=2)) for _ in range(3)]
        return await asyncio.gather(*calls, return_exceptions=True)

    outcomes = asyncio.run(scenario())
    refused = [o for o in outcomes if isinstance(o, BackendUnavailable)]
    assert refused and "requests waiting" in str(refused[0])
    assert any(isinstance(o, list) for o in outcomes)


def test_a_timeout_cancels_the_generation_and_frees_the_worker(smollm2: LocalModel) -> None:
    backend = LocalBackend(smollm2)

    # Greedy counting never ends early (a sampled answer could stop at EOS before the timeout).
    counting = [{"role": "user", "content": "Count from 1 to 300, separated by commas."}]

    async def scenario() -> float:
        with pytest.raises(BackendTimeout, match="did not answer within 0.3 s"):
            await backend.generate(counting, GenerationParams(max_tokens=400, temperature=0.0, timeout_s=0.3))
        started = time.perf_counter()
        await backend.generate(QUESTION, GenerationParams(max_tokens=2))
        return time.perf_counter() - started

    # 400 tokens take tens of seconds here; the next request must not wait for them.
    assert asyncio.run(scenario()) < 8


def test_closing_answers_waiting_callers_at_once(smollm2: LocalModel) -> None:
    backend = LocalBackend(smollm2)

    async def scenario() -> list[object]:
        calls = [
            asyncio.ensure_future(backend.generate(QUESTION, GenerationParams(max_tokens=400, temperature=1.0)))
            for _ in range(2)
        ]
        await asyncio.sleep(0.2)  # the first is generating, the second waits in the queue
        await backend.aclose()
        return await asyncio.gather(*calls, return_exceptions=True)

    started = time.perf_counter()
    outcomes = asyncio.run(scenario())
    assert all(isinstance(o, BackendUnavailable) and "shut down" in str(o) for o in outcomes)
    assert time.perf_counter() - started < 8


def test_the_alias_resolves_to_the_packaged_gguf() -> None:
    source = resolve_model_source(LocalModelSpec("smollm2"))
    assert source.embedded and source.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert Path(source.name_or_path, source.gguf_file) == embedded_gguf_path()
    assert embedded_gguf_path().stat().st_size > 50_000_000


def test_the_default_hub_name_falls_back_to_the_gguf_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import try_to_load_from_cache

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cached = isinstance(try_to_load_from_cache(DEFAULT_LOCAL_MODEL, "config.json"), str)
    source = resolve_model_source(LocalModelSpec(DEFAULT_LOCAL_MODEL))
    assert source.embedded is not cached
    assert source.local_files_only is cached


def test_other_names_and_folders_load_the_normal_way(tmp_path: Path) -> None:
    hub = resolve_model_source(LocalModelSpec("Qwen/Qwen2.5-0.5B-Instruct"))
    assert (hub.name_or_path, hub.gguf_file, hub.embedded) == ("Qwen/Qwen2.5-0.5B-Instruct", None, False)
    folder = resolve_model_source(LocalModelSpec(str(tmp_path), gguf_file="model.gguf"))
    assert (folder.name_or_path, folder.gguf_file, folder.embedded) == (str(tmp_path), "model.gguf", False)


def test_a_folder_without_a_model_is_a_config_error(loader: LocalModelLoader, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot load"):
        loader.load(LocalModelSpec(str(tmp_path)))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"model": ""}, "local.model"),
        ({"dtype": "float8"}, "local.dtype"),
    ],
)
def test_specs_are_validated(spec: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LocalModelSpec(**spec)


def test_devices_are_checked() -> None:
    import torch

    assert pick_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="not a torch device"):
        pick_device("banana")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            pick_device("cuda")


def test_queue_size_is_validated(smollm2: LocalModel) -> None:
    with pytest.raises(ConfigError, match="max_queue"):
        LocalBackend(smollm2, max_queue=0)


def test_stream_yields_pieces_then_the_completion(smollm2: LocalModel) -> None:
    backend = LocalBackend(smollm2)

    async def collect() -> list[object]:
        try:
            params = GenerationParams(max_tokens=16, temperature=0.0)
            return [piece async for piece in backend.stream([{"role": "user", "content": "Name three colours."}], params)]
        finally:
            await backend.aclose()

    pieces = asyncio.run(collect())
    *texts, final = pieces
    assert isinstance(final, Completion)
    assert len(texts) >= 2 and all(isinstance(t, str) for t in texts)  # token by token, not one block
    assert "".join(texts).strip() == final.text.strip()
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0


def test_stream_refuses_several_samples(smollm2: LocalModel) -> None:
    async def first() -> object:
        return await anext(aiter(LocalBackend(smollm2).stream([{"role": "user", "content": "x"}], GenerationParams(n=2))))

    with pytest.raises(ConfigError, match="only n = 1"):
        asyncio.run(first())
