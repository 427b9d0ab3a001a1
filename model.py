"""
model.py: the one model class of the project, a GPT-2 style transformer (nanoGPT's layout and names).

What is here, top to bottom:
  - GPTConfig / GPT: learned absolute positions, pre-LayerNorm blocks, tanh-GELU MLP, tied input/output
    embeddings. `model(idx)` returns fp32 logits for every position, shape (B, T, vocab).
  - Left-padded batches: `valid` (B, T) marks real tokens. Position ids count real tokens only and padded
    keys are masked out, so a padded row produces exactly the tokens it would produce alone.
  - KVCache + `model.generate(idx, max_new_tokens, temperature=..., top_k=...)`: batched prefill, then one
    token per step with keys/values written in place into a preallocated cache, in inference mode, with no
    per-step mask building and logits for the last position only. temperature=0 is greedy. Sampling is by
    inverse CDF (one uniform per row): torch.multinomial's distribution at a fraction of its CPU cost.
  - `GPT.from_pretrained(name_or_path)`: a Hugging Face GPT-2 checkpoint directory (config.json plus
    model.safetensors or pytorch_model.bin) loaded into this class, shape-checked key by key (HF stores the
    four attention/MLP projections as Conv1D, i.e. transposed Linear weights).
  - save_checkpoint / load_checkpoint: our own checkpoints (config + weights + tokenizer description + any
    extra state), written atomically (temp file, fsync, rename) so a crash never leaves a half-written file.
  - get_device / autocast: device autodetect cuda -> mps -> cpu, bf16 autocast only where supported.

Departures from nanoGPT / HF GPT-2, numbered:
  1. No dropout: RL fine-tuning and our small from-scratch runs do not use it, and it keeps sampling and
     training log-probs identical.
  2. A prompt longer than the context raises ValueError instead of being silently cropped, because a
     cropped problem statement would be graded against the wrong answer.

Try it:  python -c "from model import GPT, GPTConfig; m = GPT(GPTConfig()); print(m.num_params())"
"""
import json
import math
import os
import tempfile
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    block_size: int = 256  # context length in tokens (HF: n_positions)
    vocab_size: int = 64  # number of token ids; embedding rows
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads per block
    n_embd: int = 128  # residual stream width
    bias: bool = True  # biases in Linear and LayerNorm layers (GPT-2 has them)
    layer_norm_epsilon: float = 1e-5  # LayerNorm eps (GPT-2 uses 1e-5)


def config_from_dict(d, where="config"):
    """GPTConfig from a dict, naming any unknown key instead of a bare TypeError."""
    known = {f.name for f in fields(GPTConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown} in {where}; known keys: {sorted(known)}")
    return GPTConfig(**d)


class KVCache:
    """Preallocated keys/values for every layer, written in place as decoding advances.

    k, v: (n_layer, B, n_head, max_len, head_dim). valid (B, max_len) marks which cached positions hold real
    tokens (False for left padding); n_real (B,) counts real tokens so far, which gives the next position id.
    """

    def __init__(self, config, batch_size, max_len, device, dtype):
        hd = config.n_embd // config.n_head
        shape = (config.n_layer, batch_size, config.n_head, max_len, hd)
        # empty, not zeros: only positions < t are ever read, and each is written before it is read
        self.k = torch.empty(shape, device=device, dtype=dtype)
        self.v = torch.empty(shape, device=device, dtype=dtype)
        self.valid = torch.zeros(batch_size, max_len, dtype=torch.bool, device=device)
        self.n_real = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.t = 0  # number of cached positions (same for every row; padding keeps rows aligned)
        self.padded = False  # whether any cached key is padding (decoding steps add none)


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v together
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x, mask, cache=None, layer=0):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hd)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hd)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hd)
        if cache is not None:
            # write this step's keys/values in place, then attend over everything cached so far
            t0 = cache.t
            cache.k[layer, :, :, t0:t0 + T] = k
            cache.v[layer, :, :, t0:t0 + T] = v
            k = cache.k[layer, :, :, :t0 + T]  # (B, nh, t0+T, hd)
            v = cache.v[layer, :, :, :t0 + T]  # (B, nh, t0+T, hd)
        # mask None: nothing but causality to mask. SDPA's is_causal aligns the query block to the first key,
        # right for a prefill (t0 = 0) and not needed for a single decoding query, which may see every key
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and T > 1)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))  # GPT-2's "gelu_new"


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, mask, cache=None, layer=0):
        x = x + self.attn(self.ln_1(x), mask, cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied embeddings, as GPT-2
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2's scaled init of the residual projections
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self):
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx, valid=None, cache=None, last_only=False):
        """idx (B, T) token ids -> fp32 logits (B, T, V), or (B, 1, V) with last_only.

        valid (B, T) bool: False marks left padding. cache: a KVCache to read from and append to.
        """
        B, T = idx.shape
        t0 = cache.t if cache is not None else 0
        if t0 + T > self.config.block_size:
            raise ValueError(f"sequence of {t0 + T} tokens exceeds the model's context of "
                             f"{self.config.block_size} tokens (block_size)")
        if cache is not None and T == 1 and valid is None:
            # decoding fast path: one real token per row, no per-step mask building; padding keys (if any)
            # are masked by a view of the cache's validity row
            pos = cache.n_real[:, None].clone()  # (B, 1): a copy, n_real advances below
            cache.valid[:, t0] = True
            cache.n_real += 1
            mask = cache.valid[:, None, None, :t0 + 1] if cache.padded else None  # (B, 1, 1, Tk)
        elif cache is None and valid is None:
            # training and scoring: full sequences, nothing to mask but causality, and no host sync
            # (no bool() of a device tensor), which keeps the GPU busy and torch.compile's graph whole
            pos = torch.arange(T, device=idx.device)[None]  # (1, T)
            mask = None
        else:
            if valid is None:
                valid = torch.ones(B, T, dtype=torch.bool, device=idx.device)
            # position ids count real tokens only, so left padding does not shift a row's positions
            n_before = cache.n_real[:, None] if cache is not None else 0
            pos = (n_before + valid.long().cumsum(1) - 1).clamp(min=0)  # (B, T)
            if cache is not None:
                cache.valid[:, t0:t0 + T] = valid
                cache.n_real += valid.long().sum(1)
                key_valid = cache.valid[:, :t0 + T]  # (B, Tk)
            else:
                key_valid = valid
            # attention mask: causal, real keys only; every query also sees itself so a padding query's
            # softmax is never empty (its output is unused: real queries never attend to padding keys)
            all_real = bool(valid.all())
            if cache is not None:
                cache.padded = cache.padded or not all_real
            if t0 == 0 and all_real:
                mask = None  # plain causal attention (fast path)
            else:
                Tk = t0 + T
                q_abs = torch.arange(t0, t0 + T, device=idx.device)[:, None]  # (T, 1)
                k_abs = torch.arange(Tk, device=idx.device)[None, :]  # (1, Tk)
                causal = k_abs <= q_abs  # (T, Tk)
                mask = (causal[None] & key_valid[:, None, :]) | (k_abs == q_abs)[None]  # (B, T, Tk)
                mask = mask[:, None]  # (B, 1, T, Tk), broadcast over heads
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)  # (B, T, C)
        for i, block in enumerate(self.transformer.h):
            x = block(x, mask, cache, i)
        if cache is not None:
            cache.t = t0 + T
        if last_only:
            x = x[:, -1:]  # (B, 1, C): decoding needs only the next-token distribution
        x = self.transformer.ln_f(x)
        return self.lm_head(x).float()  # (B, T, V) in fp32 even under bf16 autocast

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, valid=None, eos_id=None,
                 pad_id=None, generator=None, logprobs=False):
        """Continue each row of idx (B, T) by up to max_new_tokens; returns (B, T + n), n <= max_new_tokens.

        temperature=0 is greedy (argmax) and deterministic. valid marks left padding (see forward).
        With eos_id set, a row that emitted it continues with pad_id (default eos_id), and decoding stops
        as soon as every row has ended. generator: a seeded torch.Generator for reproducible samples.
        logprobs=True also returns (B, n) log-probs of the new tokens under the model itself (temperature 1,
        the policy that RL differentiates), 0 after a row ended.
        """
        B, T = idx.shape
        if T + max_new_tokens > self.config.block_size:
            raise ValueError(f"prompt of {T} tokens + max_new_tokens={max_new_tokens} exceeds the model's "
                             f"context of {self.config.block_size} tokens (block_size)")
        pad_id = eos_id if pad_id is None else pad_id
        dtype = next(self.parameters()).dtype
        if torch.is_autocast_enabled(idx.device.type):
            dtype = torch.get_autocast_dtype(idx.device.type)
        with torch.inference_mode():  # no autograd bookkeeping at all (cheaper than no_grad per op)
            cache = KVCache(self.config, B, T + max_new_tokens, idx.device, dtype)
            logits = self(idx, valid=valid, cache=cache, last_only=True)[:, -1]  # (B, V) batched prefill
            out = torch.empty(B, max_new_tokens, dtype=idx.dtype, device=idx.device)
            out_lp = torch.zeros(B, max_new_tokens, device=idx.device)
            done = torch.zeros(B, dtype=torch.bool, device=idx.device)
            n = 0
            for n in range(1, max_new_tokens + 1):
                tok = sample_next(logits, temperature, top_k, generator)  # (B,)
                if eos_id is not None:
                    tok.masked_fill_(done, pad_id)
                if logprobs:  # rows that ended before this step get 0
                    lp = F.log_softmax(logits, dim=-1).gather(1, tok[:, None])[:, 0]  # (B,)
                    out_lp[:, n - 1] = lp.masked_fill_(done, 0.0)
                if eos_id is not None:
                    done |= tok == eos_id
                out[:, n - 1] = tok
                if n == max_new_tokens or (eos_id is not None and bool(done.all())):
                    break
                logits = self(tok[:, None], cache=cache, last_only=True)[:, -1]  # (B, V)
        # built outside inference mode, so callers may feed the result to autograd (e.g. train on it)
        tokens = torch.cat([idx, out[:, :n]], dim=1)
        return (tokens, out_lp[:, :n].clone()) if logprobs else tokens

    @classmethod
    def from_pretrained(cls, name_or_path):
        """Load a Hugging Face GPT-2 checkpoint: a local directory, or a hub name when online."""
        path = _resolve_hf_path(name_or_path)
        cfg_file = os.path.join(path, "config.json")
        if not os.path.isfile(cfg_file):
            raise FileNotFoundError(f"{path} has no config.json; expected a Hugging Face checkpoint directory")
        with open(cfg_file) as f:
            hf = json.load(f)
        model_type = hf.get("model_type")
        if model_type != "gpt2":
            raise ValueError(f"{cfg_file}: model_type={model_type!r} (architectures={hf.get('architectures')}) "
                             f"is not supported; this loader reads GPT-2 checkpoints only")
        act = hf.get("activation_function", "gelu_new")
        if act not in ("gelu_new", "gelu_pytorch_tanh") or hf.get("scale_attn_by_inverse_layer_idx") \
                or hf.get("reorder_and_upcast_attn") or hf.get("scale_attn_weights") is False:
            raise ValueError(f"{cfg_file}: GPT-2 variant not supported (activation {act!r} or attention options)")
        config = GPTConfig(block_size=hf["n_positions"], vocab_size=hf["vocab_size"], n_layer=hf["n_layer"],
                           n_head=hf["n_head"], n_embd=hf["n_embd"],
                           layer_norm_epsilon=hf.get("layer_norm_epsilon", 1e-5))
        model = cls(config)
        sd_hf = _read_hf_weights(path)
        # GPT2Model checkpoints lack the "transformer." prefix; the causal-attention masks are buffers, not weights
        sd_hf = {(k if k.startswith(("transformer.", "lm_head.")) else "transformer." + k): v
                 for k, v in sd_hf.items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
        sd_hf.setdefault("lm_head.weight", sd_hf.get("transformer.wte.weight"))
        sd = model.state_dict()
        missing = sorted(set(sd) - set(sd_hf))
        extra = sorted(set(sd_hf) - set(sd))
        if missing or extra:
            raise ValueError(f"{path}: checkpoint keys do not match GPT-2: missing {missing[:5]}, "
                             f"unexpected {extra[:5]}")
        conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
        with torch.no_grad():
            for k, v in sd_hf.items():
                if k.endswith(conv1d):
                    v = v.t()  # HF Conv1D stores (in, out); nn.Linear wants (out, in)
                if v.shape != sd[k].shape:
                    raise ValueError(f"{path}: shape mismatch for {k}: checkpoint {tuple(v.shape)}, "
                                     f"model {tuple(sd[k].shape)}")
                sd[k].copy_(v)
        return model


def sample_next(logits, temperature=1.0, top_k=None, generator=None):
    """Next token ids (B,) from logits (B, V). temperature=0: argmax.

    Sampling is by inverse CDF: one uniform per row, located in the cumulative probabilities. It draws from
    the same distribution as torch.multinomial, which spends one exponential variate per vocabulary entry
    and dominates decoding time on a CPU at GPT-2's 50k-token vocabulary.
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    if temperature != 1.0:
        logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    cdf = F.softmax(logits, dim=-1).cumsum_(-1)  # (B, V), non-decreasing: zero-probability tokens add a flat step
    u = torch.rand(cdf.shape[0], 1, device=cdf.device, generator=generator) * cdf[:, -1:]  # (B, 1) in [0, total)
    # the first index whose cdf exceeds u: never a zero-probability token (its cdf equals its predecessor's)
    return torch.searchsorted(cdf, u, right=True)[:, 0].clamp_(max=cdf.shape[1] - 1)  # (B,)


def _resolve_hf_path(name_or_path):
    if os.path.isdir(name_or_path):
        return name_or_path
    if os.path.sep in name_or_path or name_or_path.startswith("."):
        raise FileNotFoundError(f"checkpoint directory {name_or_path} does not exist")
    try:  # a hub name such as "gpt2" or "gpt2-medium"
        from huggingface_hub import snapshot_download
        return snapshot_download(name_or_path, allow_patterns=["config.json", "*.safetensors", "*.bin"])
    except Exception as e:
        raise FileNotFoundError(f"could not fetch {name_or_path!r} from the Hugging Face hub ({type(e).__name__}: "
                                f"{e}); install huggingface_hub and go online, or pass a local directory holding "
                                f"config.json and model.safetensors / pytorch_model.bin") from e


def _read_hf_weights(path):
    st, pt = os.path.join(path, "model.safetensors"), os.path.join(path, "pytorch_model.bin")
    if os.path.isfile(st):
        from safetensors.torch import load_file
        return load_file(st)
    if os.path.isfile(pt):
        return torch.load(pt, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{path} has no model.safetensors or pytorch_model.bin")


# ----------------------------------------------------------------------------------------------------------
# our own checkpoints


def save_checkpoint(path, model, tokenizer=None, **extra):
    """Write {config, model weights, tokenizer description, extra} to path atomically.

    The bytes go to a temp file in the same directory, are fsynced, then renamed over path: a crash at any
    moment leaves either the old checkpoint or the new one, never a truncated file.
    """
    raw = model.module if hasattr(model, "module") else model  # unwrap DDP
    state = {"config": asdict(raw.config), "model": raw.state_dict(),
             "tokenizer": tokenizer.describe() if tokenizer is not None else None, **extra}
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_checkpoint(path, map_location="cpu"):
    """Returns (model, state) where state holds 'tokenizer' and any extra entries saved with it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:
        raise ValueError(f"checkpoint file {path} could not be read ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise ValueError(f"checkpoint file {path} is not a checkpoint of this project (no config/model entries)")
    model = GPT(config_from_dict(state["config"], where=path))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise ValueError(f"checkpoint file {path}: weights do not fit its config: {e}") from e
    return model, state


# ----------------------------------------------------------------------------------------------------------
# devices


def get_device(override=None):
    """cuda -> mps -> cpu, unless override ('cpu', 'cuda', 'cuda:1', 'mps') names one."""
    if override:
        return torch.device(override)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast(device):
    """bf16 autocast on a CUDA device that supports it; full fp32 everywhere else (CPU bf16 is slow here)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()
