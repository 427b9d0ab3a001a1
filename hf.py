"""
hf.py: Hugging Face GPT-2 / Llama / Qwen2 checkpoints for model.py's GPT.from_pretrained (a reader may skip it):
config.json -> GPTConfig, or a ValueError naming what GPT does not do (model.py's departure 3, GPT-2's other
activations and attention options); one key table from HF tensor names to ours or row blocks of our fused ones;
weights read weights-only from model.safetensors, pytorch_model.bin or their shards, local or from the hub.
Try it:  python -c "from model import GPT; print(GPT.from_pretrained('path/to/Qwen2.5-0.5B-Instruct').config)"
"""
import json
import os
from pathlib import Path

import torch

from model import GPTConfig

# Llama / Qwen2 names of our tensors (GPT-2's are ours), and the HF tensors stacked in our fused ones, in order
LLAMA_NAMES = [("transformer.wte", "model.embed_tokens"), ("transformer.ln_f", "model.norm"),
               ("transformer.h", "model.layers"), ("ln_1", "input_layernorm"), ("ln_2", "post_attention_layernorm"),
               ("attn.c_proj", "self_attn.o_proj"), ("mlp.c_proj", "mlp.down_proj")]
LLAMA_FUSED = {"attn.c_attn": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
               "mlp.c_fc": ["mlp.gate_proj", "mlp.up_proj"]}


def load(name_or_path, cls):
    """cls(config) holding the checkpoint's weights in fp32, whatever dtype it stores."""
    path = resolve(name_or_path)
    cfg_file = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_file):
        raise FileNotFoundError(f"{path} has no config.json; expected a Hugging Face checkpoint directory")
    hf = json.loads(Path(cfg_file).read_text())
    cfg, mt = config(hf, cfg_file), hf["model_type"]
    model, table, prefix = cls(cfg), key_table(cls, cfg, mt), "transformer." if mt == "gpt2" else "model."
    # GPT2Model / LlamaModel checkpoints lack the prefix. Not weights: GPT-2's causal-mask buffers, old RoPE
    # inv_freq buffers, and a tied lm_head (HF ignores it too)
    skip = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq") + ("lm_head.weight",) * cfg.tie_word_embeddings
    sd_hf = {k if k.startswith((prefix, "lm_head.")) else prefix + k: v for k, v in read_weights(path).items()
             if not k.endswith(skip)}
    if set(table) != set(sd_hf):
        raise ValueError(f"{path}: checkpoint keys do not match {mt} with this config.json: missing "
                         f"{sorted(set(table) - set(sd_hf))[:5]}, unexpected {sorted(set(sd_hf) - set(table))[:5]}")
    sd = model.state_dict()  # detached views of the parameters: copied into without autograd
    for k, (ours, row, n, transpose) in table.items():
        dst, v = sd[ours][row:row + n], sd_hf[k]  # all of our tensor, or a row block of a fused one
        want = tuple(dst.shape[::-1] if transpose else dst.shape)
        if tuple(v.shape) != want:
            raise ValueError(f"{path}: shape mismatch for {k}: checkpoint {tuple(v.shape)}, expected {want}")
        dst.copy_(v.t() if transpose else v)
    return model


def config(hf, where):
    """GPTConfig of an HF config.json dict (gpt2, llama, qwen2; absent optional keys take HF's class defaults)."""
    mt, get = hf.get("model_type"), hf.get
    llama, tie = mt in ("llama", "qwen2"), hf.get("tie_word_embeddings", mt == "gpt2")
    need = ["n_positions", "vocab_size", "n_layer", "n_head", "n_embd"] if mt == "gpt2" else [
        "vocab_size", "num_hidden_layers", "num_attention_heads", "hidden_size", "intermediate_size"] * llama
    C, nh, act = get("hidden_size", 0), get("num_attention_heads", 1), get("activation_function", "gelu_new")
    rope = get("rope_scaling") or get("rope_parameters") or {}  # transformers 5 nests rope_theta here
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    problems = [p for p, bad in [
        (f"this loader reads gpt2, llama and qwen2 (architectures={get('architectures')})", mt != "gpt2" and not llama),
        (f"config lacks {[k for k in need if k not in hf]}", not set(need) <= hf.keys()),
        (f"GPT-2 activation {act!r} or attention options", mt == "gpt2" and (
            act not in ("gelu_new", "gelu_pytorch_tanh") or get("scale_attn_by_inverse_layer_idx")
            or get("reorder_and_upcast_attn") or get("scale_attn_weights") is False)),
        (f"hidden_act {get('hidden_act')!r} (only silu)", llama and get("hidden_act", "silu") != "silu"),
        (f"rope_type {rope_type!r} (only plain RoPE, 'default')", llama and rope_type != "default"),
        ("attention_bias / mlp_bias", llama and (get("attention_bias") or get("mlp_bias"))),
        ("use_sliding_window", llama and get("use_sliding_window")),
        (f"head_dim {get('head_dim')} != hidden_size / num_attention_heads",
         C % nh or get("head_dim") not in (None, C // nh))] if bad]
    if problems:
        raise ValueError(f"{where}: model_type={mt!r} variant not supported: {'; '.join(problems)}")
    if mt == "gpt2":
        return GPTConfig(block_size=hf["n_positions"], vocab_size=hf["vocab_size"], n_layer=hf["n_layer"],
                         n_head=hf["n_head"], n_embd=hf["n_embd"], intermediate_size=get("n_inner") or 0,
                         layer_norm_epsilon=get("layer_norm_epsilon", 1e-5), tie_word_embeddings=tie)
    return GPTConfig(
        block_size=get("max_position_embeddings", 2048 if mt == "llama" else 32768), vocab_size=hf["vocab_size"],
        n_layer=hf["num_hidden_layers"], n_head=nh, n_embd=C, bias=False, layer_norm_epsilon=get("rms_norm_eps", 1e-6),
        rope=True, rope_theta=float(get("rope_theta", rope.get("rope_theta", 10000.0))), rmsnorm=True, swiglu=True,
        intermediate_size=hf["intermediate_size"], qkv_bias=mt == "qwen2", tie_word_embeddings=tie,
        n_kv_head=get("num_key_value_heads") or (nh if mt == "llama" else 32))


def key_table(cls, config, model_type):
    """HF key -> (our key, first row, rows, transpose: GPT-2's Conv1D is (in, out)) for every tensor of cls(config)."""
    with torch.device("meta"):  # our tensors' names and shapes, with no memory and no random numbers drawn
        model = cls(config)
    table, gpt2 = {}, model_type == "gpt2"
    for ours, p in model.named_parameters():  # (no buffers) a tied lm_head is wte's parameter, listed once, as wte
        hf, fused = ours, None if gpt2 else next((f for f in LLAMA_FUSED if f + "." in ours), None)
        for a, b in [] if gpt2 else LLAMA_NAMES:
            hf = hf.replace(a, b)
        if fused is None:
            table[hf] = (ours, 0, p.shape[0], gpt2 and ours.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")))
            continue
        row, sizes = 0, model.transformer.h[0].attn.sizes if fused == "attn.c_attn" else [p.shape[0] // 2] * 2
        for name, n in zip(LLAMA_FUSED[fused], sizes):  # q, k, v (or gate, up) fill consecutive row blocks
            table[hf.replace(fused, name)], row = (ours, row, n, False), row + n
    return table


def resolve(name_or_path):
    """A local directory, or a hub name ("gpt2", "Qwen/Qwen2.5-0.5B-Instruct") fetched with its tokenizer's files."""
    if os.path.isdir(name_or_path):
        return name_or_path
    if os.path.sep in name_or_path or name_or_path.startswith("."):
        raise FileNotFoundError(f"checkpoint directory {name_or_path} does not exist")
    try:
        from huggingface_hub import snapshot_download
        return snapshot_download(name_or_path, allow_patterns=["*.json", "*.safetensors", "*.bin", "*.txt", "*.jinja"])
    except Exception as e:
        raise FileNotFoundError(f"could not fetch {name_or_path!r} from the Hugging Face hub ({type(e).__name__}: {e});"
                                f" install huggingface_hub and go online, or pass a local directory") from e


def read_weights(path):
    """Every tensor of model.safetensors, pytorch_model.bin, or the shards a *.index.json's weight_map names."""
    from safetensors.torch import load_file
    for name in [f + i for f in ("model.safetensors", "pytorch_model.bin") for i in ("", ".index.json")]:
        f, sd = os.path.join(path, name), {}
        if not os.path.isfile(f):
            continue
        shards = sorted(set(json.loads(Path(f).read_text())["weight_map"].values())) if f.endswith(".json") else [name]
        for s in shards:
            if not os.path.isfile(os.path.join(path, s)):
                raise FileNotFoundError(f"{f} names shard {s}, which is not in {path}")
            sd.update(load_file(os.path.join(path, s)) if ".safetensors" in name
                      else torch.load(os.path.join(path, s), map_location="cpu", weights_only=True))
        return sd
    raise FileNotFoundError(f"{path} has no model.safetensors or pytorch_model.bin (nor a sharded index of either)")
