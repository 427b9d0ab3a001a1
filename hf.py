"""
hf.py: Hugging Face GPT-2 / Llama / Qwen2 checkpoints for model.py's GPT.from_pretrained, and back (a reader may
skip it): config.json -> GPTConfig, or a ValueError naming what GPT does not do (model.py's departure 3, GPT-2's
other activations and attention options); one key table from HF tensor names to ours or row blocks of our fused
ones; weights read weights-only from model.safetensors, pytorch_model.bin or their shards, local or from the hub.
export() is the inverse through the same table and config(): our .pt -> config.json (gpt2, or llama / qwen2 for
RoPE models), model.safetensors (q/k/v and gate/up split back; a tied lm_head not written, as HF saves it) and
the tokenizer: the files of the HF directory the checkpoint started from, or a description of ours (transformers
cannot load the toy character tokenizer). A config HF cannot express is refused, naming the fields.
from_gguf() makes such a directory of a GGUF file (a quantized llama.cpp model): transformers' GGUF loader
dequantizes it to fp32 (it needs `gguf` and `accelerate`); its weights, config.json (less quantization_config)
and tokenizer are written as a plain HF directory.
Try it:  python -c "from model import GPT; print(GPT.from_pretrained('path/to/Qwen2.5-0.5B-Instruct').config)"
         python hf.py --export out_small/score.pt --out out_small/score-hf
         python hf.py --from-gguf SmolLM2-135M-Instruct.Q4_1.gguf --out smollm2   # docs/real-model.md
"""
import json
import os
import shutil
from dataclasses import asdict
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


# what export copies from the HF directory a checkpoint started from: its tokenizer and its generation defaults
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json", "generation_config.json")
NOT_LOADABLE = "none: transformers cannot load this model's tokenizer; see tokenizer_description.json"
ARCHITECTURES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}


def export(path, out_dir, force=False):
    """Our .pt checkpoint -> the Hugging Face directory out_dir, whole or not at all: written into a temp directory
    beside it, then renamed. A non-empty out_dir is replaced only with force, and only if it holds a config.json
    (an earlier export): force never deletes a folder that is not a model's. Returns config.json's dict."""
    from model import GPT  # here, not at the top: model.py imports this module
    from runs import load_checkpoint
    out = os.path.abspath(out_dir)
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory, not a .pt checkpoint (a Hugging Face directory needs no export)")
    full = os.path.isdir(out) and bool(os.listdir(out))
    problems = [p for p, bad in [
        (f"--out {out_dir} exists and is not a directory", os.path.exists(out) and not os.path.isdir(out)),
        (f"--out {out_dir} is not empty; pass --force to replace it", full and not force),
        (f"--out {out_dir} holds no config.json, so it is no earlier export; --force will not delete it",
         full and not os.path.isfile(os.path.join(out, "config.json"))),
        (f"{path} lies inside --out {out_dir}, which the export replaces",
         os.path.abspath(path).startswith(out + os.sep))] if bad]
    if problems:
        raise FileExistsError(problems[0])
    try:
        model, state = load_checkpoint(path)
    except ValueError as e:
        raise ValueError(one_line(e)) from e
    sd = model.state_dict()
    bad = next((k for k, v in sd.items() if not torch.isfinite(v).all()), None)
    if bad is not None:
        raise ValueError(f"{path}: {bad} holds non-finite values (NaN or inf); refusing to export it")
    cfg, (files, desc, token_ids) = hf_config(model.config, path), tokenizer_files(path, state.get("tokenizer"))
    cfg.update(token_ids)
    # the key table of loading, read backwards: each HF tensor is our tensor, or a row block of a fused one
    tensors = {k: (sd[ours][row:row + n].t() if transpose else sd[ours][row:row + n]).clone(
        memory_format=torch.contiguous_format) for k, (ours, row, n, transpose) in
        key_table(GPT, model.config, cfg["model_type"]).items()}
    from safetensors.torch import save_file
    tmp = os.path.join(os.path.dirname(out), f".tmp-export-{os.getpid()}-{os.urandom(4).hex()}")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    os.mkdir(tmp)  # the umask's permissions (mkdtemp's are 0700)
    try:
        Path(tmp, "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        save_file(tensors, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        shutil.copymode(os.path.join(tmp, "config.json"), os.path.join(tmp, "model.safetensors"))  # not 0600
        for f in files:
            shutil.copyfile(f, os.path.join(tmp, os.path.basename(f)))
        if desc:  # and a tokenizer class that does not exist: AutoTokenizer would build an empty GPT-2 one, silently
            Path(tmp, "tokenizer_description.json").write_text(json.dumps(desc, indent=2, ensure_ascii=False) + "\n")
            Path(tmp, "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": NOT_LOADABLE}) + "\n")
        if os.path.isdir(out):  # empty, or an earlier export (force): moved aside, deleted once the new one is in
            os.rename(out, tmp + "-old")
        os.rename(tmp, out)
    except BaseException:
        if os.path.isdir(tmp + "-old") and not os.path.exists(out):
            os.rename(tmp + "-old", out)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(tmp + "-old", ignore_errors=True)
    return cfg


def from_gguf(gguf, out_dir):
    """A GGUF file -> the HF directory out_dir (which must not exist or be empty), written whole or not at all."""
    if not os.path.isfile(gguf):
        raise FileNotFoundError(f"--from-gguf {gguf}: no such file")
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise FileExistsError(f"--out {out_dir} exists and is not an empty directory")
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folder, name = os.path.split(os.path.abspath(gguf))
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)  # the weights written are plain fp32
    tied = cfg.get("tie_word_embeddings")
    tensors = {k: v.contiguous() for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}
    tmp = os.path.abspath(out_dir) + f".tmp-{os.getpid()}"
    try:
        os.makedirs(tmp)
        AutoTokenizer.from_pretrained(folder, gguf_file=name).save_pretrained(tmp)  # tokenizer.json, chat template
        Path(tmp, "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        save_file(tensors, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        shutil.copymode(os.path.join(tmp, "config.json"), os.path.join(tmp, "model.safetensors"))  # not 0600
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)
        os.rename(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return cfg


def one_line(e):
    """The message of e on one line. torch's weights-only refusal is paragraphs of advice around the line that says
    why ("Unsupported operand 110", "unsupported GLOBAL posix.system"): that line is kept, the advice dropped."""
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    if len(lines) > 2 and "Weights only load failed" in lines[0]:
        return lines[0].split("Weights only load failed")[0] + lines[-2] + ")"
    return " ".join(lines)


def hf_config(c, where):
    """config.json's dict of GPTConfig c: gpt2 without RoPE, else qwen2 (q/k/v biases only) or llama. config() must
    read it back as c (up to fields that change nothing); else a ValueError names each field HF's family changes."""
    mt = "gpt2" if not c.rope else "qwen2" if c.qkv_bias and not c.bias else "llama"
    if mt == "gpt2":  # no dropout: model.py's departure 1
        d = dict(n_positions=c.block_size, n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd,
                 n_inner=c.intermediate_size or None, layer_norm_epsilon=c.layer_norm_epsilon,
                 activation_function="gelu_new", attn_pdrop=0.0, embd_pdrop=0.0, resid_pdrop=0.0)
    else:
        d = dict(max_position_embeddings=c.block_size, num_hidden_layers=c.n_layer, num_attention_heads=c.n_head,
                 num_key_value_heads=c.n_kv_head or c.n_head, hidden_size=c.n_embd, head_dim=c.n_embd // c.n_head,
                 intermediate_size=c.intermediate_size or 4 * c.n_embd, rms_norm_eps=c.layer_norm_epsilon,
                 rope_theta=c.rope_theta, hidden_act="silu",
                 **({"use_sliding_window": False} if mt == "qwen2" else {"attention_bias": False, "mlp_bias": False}))
    d = dict(architectures=[ARCHITECTURES[mt]], model_type=mt, vocab_size=c.vocab_size, **d,
             tie_word_embeddings=c.tie_word_embeddings, torch_dtype="float32")
    ours, back = canonical(c), canonical(config(d, where))
    diff = [f"{k}={v!r} ({mt} has {back[k]!r})" for k, v in ours.items() if back[k] != v]
    if diff:
        raise ValueError(f"{where}: a config Hugging Face cannot express: as model_type {mt!r} it would change "
                         + ", ".join(diff))
    return d


def canonical(c):
    """GPTConfig c as a dict, defaults spelled out and fields that change nothing (an unused rope_theta) dropped."""
    return {**asdict(c), "n_kv_head": c.n_kv_head or c.n_head, "intermediate_size": c.intermediate_size or 4 * c.n_embd,
            "qkv_bias": c.qkv_bias and not c.bias, "rope_theta": c.rope_theta if c.rope else None}


def tokenizer_files(path, tok):
    """(files to copy, tokenizer_description.json's dict or None, config.json's token ids) for the tokenizer a
    checkpoint describes. Only an HF directory's tokenizer is one transformers loads; ours are described."""
    from tokenizer import CharTokenizer
    kind = (tok or {}).get("kind")
    if kind == "hf":  # trained from an HF directory: its files, and its config.json's token ids
        src = tok["path"]
        if not os.path.isdir(src):
            raise FileNotFoundError(f"{path} was trained with the tokenizer of {src}, which no longer exists; "
                                    f"the export copies its files: put the directory back there")
        cfg = json.loads(Path(src, "config.json").read_text()) if os.path.isfile(Path(src, "config.json")) else {}
        return ([os.path.join(src, f) for f in TOKENIZER_FILES if os.path.isfile(os.path.join(src, f))], None,
                {k: cfg[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in cfg})
    if kind == "char":
        t = CharTokenizer(tok["alphabet"])
        return [], {**tok, "vocab": ["<pad>", "<eot>", *t.alphabet], "note": (
            "score-minimal's toy character tokenizer (tokenizer.py CharTokenizer): id 0 is <pad>, 1 <eot> (end of "
            "turn), then one id per character of the alphabet, in order (the vocab list above). transformers cannot "
            "load it, so this directory has no tokenizer files; encode with score-minimal's tokenizer.py: "
            "from_description(json.load(open('tokenizer_description.json')))")}, dict(
            bos_token_id=t.eos_id, eos_token_id=t.eos_id, pad_token_id=t.pad_id)
    if kind == "tiktoken":  # an HF GPT-2 directory without tokenizer files: tiktoken's GPT-2 BPE
        return [], {**tok, "note": (
            "GPT-2's BPE (tiktoken's 'gpt2' encoding), the tokenizer of the hub's openai-community/gpt2: "
            "AutoTokenizer.from_pretrained('openai-community/gpt2'). The checkpoint started from a GPT-2 directory "
            "without tokenizer files, so none are written here")}, dict(bos_token_id=50256, eos_token_id=50256)
    return [], {"kind": None, "note": f"the checkpoint records no tokenizer ({tok!r})"}, dict.fromkeys(
        ("bos_token_id", "eos_token_id", "pad_token_id"))  # None: not GPT2Config's default 50256


if __name__ == "__main__":
    import argparse
    p = argparse.ArgumentParser(description="Export our .pt checkpoint as a Hugging Face directory, or convert a "
                                "GGUF file to one (hf.py docstring).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--export", metavar="CHECKPOINT.pt", help="a checkpoint written by score.py")
    src.add_argument("--from-gguf", metavar="FILE.gguf", help="a GGUF model, dequantized to fp32 by transformers")
    p.add_argument("--out", required=True, metavar="DIR", help="the directory to write (it must not hold files)")
    p.add_argument("--force", action="store_true", help="replace DIR, an earlier export, if it is not empty")
    a = p.parse_args()
    try:
        c = export(a.export, a.out, a.force) if a.export else from_gguf(a.from_gguf, a.out)
    except (ValueError, ImportError, FileNotFoundError, FileExistsError) as e:  # bad input: one line, no traceback
        raise SystemExit(f"hf.py: error: {one_line(e)}")
    print(f"hf.py: wrote {a.out} ({c['model_type']}); try: python -c \"from transformers import "
          f"AutoModelForCausalLM as M; print(M.from_pretrained('{a.out}'))\"")
