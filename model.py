"""
model.py: the one model class of the project, a GPT-2 style transformer (nanoGPT's layout and names) whose
config can also switch on the pieces of the Llama / Qwen2 family.

What is here, top to bottom:
  - GPTConfig / GPT: by default GPT-2: learned absolute positions, pre-LayerNorm blocks, tanh-GELU MLP, tied
    input/output embeddings. `model(idx)` returns fp32 logits for every position, shape (B, T, vocab);
    `model(idx, targets=t)` returns only log p(t) (B, T), without ever holding all the logits (see forward).
  - Llama / Qwen2 options, each a GPTConfig field whose default keeps GPT-2 (so old checkpoints, which store
    the config dict, load unchanged): rope + rope_theta (rotary positions instead of wpe), rmsnorm,
    swiglu + intermediate_size, n_kv_head (grouped-query attention), qkv_bias (Qwen2: biases on q, k, v only),
    tie_word_embeddings. Module names stay nanoGPT's: q/k/v live fused in attn.c_attn, gate/up fused in
    mlp.c_fc, and the loader splits HF's separate tensors into them.
  - Left-padded batches: `valid` (B, T) marks real tokens. Position ids count real tokens only and padded
    keys are masked out, so a padded row produces exactly the tokens it would produce alone.
  - KVCache + `model.generate(idx, max_new_tokens, temperature=..., top_k=...)`: batched prefill, then one
    token per step with keys/values written in place into a preallocated cache, in inference mode, with no
    per-step mask building and logits for the last position only. temperature=0 is greedy. Sampling is by
    inverse CDF (one uniform per row): torch.multinomial's distribution at a fraction of its CPU cost.
  - `GPT.from_pretrained(name_or_path)`: a Hugging Face checkpoint directory of GPT2LMHeadModel,
    LlamaForCausalLM or Qwen2ForCausalLM (config.json plus model.safetensors, sharded safetensors with
    model.safetensors.index.json, or pytorch_model.bin) loaded into this class, shape-checked key by key with
    errors naming the checkpoint's key (HF GPT-2 stores its projections as Conv1D, i.e. transposed).
  - `model.grad_ckpt = True`: recompute each block in the backward pass (torch.utils.checkpoint) instead of
    storing its activations: memory for long RL sequences at about one extra forward of compute.
  - save_checkpoint / load_checkpoint: our own checkpoints (config + weights + tokenizer description + any
    extra state), written atomically (temp file, fsync, rename) so a crash never leaves a half-written file.
  - get_device / autocast: device autodetect cuda -> mps -> cpu, bf16 autocast only where supported.

Departures from nanoGPT / HF (GPT-2, Llama, Qwen2), numbered:
  1. No dropout: RL fine-tuning and our small from-scratch runs do not use it, and it keeps sampling and
     training log-probs identical.
  2. A prompt longer than the context raises ValueError instead of being silently cropped, because a
     cropped problem statement would be graded against the wrong answer.
  3. Llama/Qwen2: only the plain RoPE of rope_type "default" (no Llama-3.1 "llama3" or YaRN scaling: such a
     checkpoint is refused with the reason); no sliding-window attention (Qwen2's use_sliding_window is off
     in the released checkpoints; refused when on); no Llama attention_bias / mlp_bias.
  4. RMSNorm eps is stored in layer_norm_epsilon (one eps field for either norm).
  5. RoPE's angles are computed in fp32 from the position ids on every forward (no cached table or buffer),
     so casting the model to bf16 never rounds them; grouped-query attention is SDPA's enable_gqa (hence
     torch >= 2.5), not a repeated copy of the keys and values.

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
from torch.utils.checkpoint import checkpoint


@dataclass
class GPTConfig:
    block_size: int = 256  # context length in tokens (HF: n_positions, max_position_embeddings)
    vocab_size: int = 64  # number of token ids; embedding rows
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads per block
    n_embd: int = 128  # residual stream width
    bias: bool = True  # biases in every Linear and LayerNorm layer (GPT-2 has them; Llama/Qwen2 do not)
    layer_norm_epsilon: float = 1e-5  # LayerNorm eps (GPT-2 uses 1e-5), or RMSNorm eps (HF: rms_norm_eps)
    # the Llama / Qwen2 family; every default keeps GPT-2
    rope: bool = False  # rotary position embeddings on q, k instead of the learned wpe table
    rope_theta: float = 10000.0  # RoPE base (HF: rope_theta; Qwen2.5: 1e6)
    rmsnorm: bool = False  # RMSNorm (no mean, no bias) instead of LayerNorm
    swiglu: bool = False  # MLP down(silu(gate(x)) * up(x)) instead of GELU
    intermediate_size: int = 0  # MLP hidden width; 0 = 4 * n_embd (GPT-2)
    n_kv_head: int = 0  # key/value heads, grouped-query attention (HF: num_key_value_heads); 0 = n_head
    qkv_bias: bool = False  # biases on the q, k, v projections even when bias=False (Qwen2)
    tie_word_embeddings: bool = True  # lm_head shares wte's weight (GPT-2, Qwen2.5-0.5B; not Llama-3-8B)


def config_from_dict(d, where="config"):
    """GPTConfig from a dict, naming any unknown key instead of a bare TypeError."""
    known = {f.name for f in fields(GPTConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown} in {where}; known keys: {sorted(known)}")
    return GPTConfig(**d)


class KVCache:
    """Preallocated keys/values for every layer, written in place as decoding advances.

    k, v: (n_layer, B, n_kv_head, max_len, head_dim). valid (B, max_len) marks which cached positions hold real
    tokens (False for left padding); n_real (B,) counts real tokens so far, which gives the next position id.
    Keys are cached after RoPE, i.e. already rotated to their own (real-token) position.
    """

    def __init__(self, config, batch_size, max_len, device, dtype):
        hd = config.n_embd // config.n_head
        shape = (config.n_layer, batch_size, config.n_kv_head or config.n_head, max_len, hd)
        # empty, not zeros: only positions < t are ever read, and each is written before it is read
        self.k = torch.empty(shape, device=device, dtype=dtype)
        self.v = torch.empty(shape, device=device, dtype=dtype)
        self.valid = torch.zeros(batch_size, max_len, dtype=torch.bool, device=device)
        self.n_real = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.t = 0  # number of cached positions (same for every row; padding keeps rows aligned)
        self.padded = False  # whether any cached key is padding (decoding steps add none)


def rope_cos_sin(pos, head_dim, theta):
    """cos, sin (B, 1, T, head_dim) of RoPE's angles pos * theta^(-2i/head_dim), in fp32 (HF's convention:
    frequency i rotates the pair (i, i + head_dim/2), so the angles repeat once across the head)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=pos.device).float() / head_dim))  # (hd/2,)
    ang = pos[..., None].float() * inv_freq  # (B, T, hd/2)
    ang = torch.cat([ang, ang], dim=-1)[:, None]  # (B, 1, T, hd), broadcast over heads
    return ang.cos(), ang.sin()


def apply_rope(x, cos, sin):
    """Rotate each (x_i, x_{i+hd/2}) pair of x (B, nh, T, hd) by its angle."""
    x1, x2 = x.chunk(2, dim=-1)  # 2 x (B, nh, T, hd/2)
    return x * cos.to(x.dtype) + torch.cat([-x2, x1], dim=-1) * sin.to(x.dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head = config.n_head
        self.n_kv_head = config.n_kv_head or config.n_head
        hd = config.n_embd // config.n_head
        self.sizes = [config.n_embd, self.n_kv_head * hd, self.n_kv_head * hd]  # q, k, v widths
        # q, k, v together (HF's separate q/k/v_proj are stacked into it by the loader)
        self.c_attn = nn.Linear(config.n_embd, sum(self.sizes), bias=config.bias or config.qkv_bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x, mask, cache=None, layer=0, rope=None):
        B, T, C = x.shape
        hd, nkv = C // self.n_head, self.n_kv_head
        q, k, v = self.c_attn(x).split(self.sizes, dim=2)  # (B, T, C), 2 x (B, T, nkv*hd)
        q = q.view(B, T, self.n_head, hd).transpose(1, 2)  # (B, nh, T, hd)
        k = k.view(B, T, nkv, hd).transpose(1, 2)  # (B, nkv, T, hd)
        v = v.view(B, T, nkv, hd).transpose(1, 2)  # (B, nkv, T, hd)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            # write this step's keys/values in place, then attend over everything cached so far
            t0 = cache.t
            cache.k[layer, :, :, t0:t0 + T] = k
            cache.v[layer, :, :, t0:t0 + T] = v
            k = cache.k[layer, :, :, :t0 + T]  # (B, nkv, t0+T, hd)
            v = cache.v[layer, :, :, :t0 + T]  # (B, nkv, t0+T, hd)
        gqa = nkv != self.n_head  # query head h reads key/value head h // (nh / nkv), as HF's repeat_kv
        # mask None: nothing but causality to mask. SDPA's is_causal aligns the query block to the first key,
        # right for a prefill (t0 = 0) and not needed for a single decoding query, which may see every key
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and T > 1,
                                           enable_gqa=gqa)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.swiglu = config.swiglu
        hidden = config.intermediate_size or 4 * config.n_embd
        # SwiGLU: gate and up projections together (HF's gate_proj/up_proj are stacked into c_fc by the loader)
        self.c_fc = nn.Linear(config.n_embd, (2 if self.swiglu else 1) * hidden, bias=config.bias)
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)

    def forward(self, x):
        if self.swiglu:
            gate, up = self.c_fc(x).chunk(2, dim=-1)  # 2 x (B, T, hidden)
            return self.c_proj(F.silu(gate) * up)
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))  # GPT-2's "gelu_new"


class RMSNorm(nn.Module):
    """weight * x / rms(x), computed in fp32 and cast back before the weight, exactly as HF Llama/Qwen2 do
    (a bf16 mean of squares would lose precision)."""

    def __init__(self, n, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n))

    def forward(self, x):
        xf = x.float()
        return self.weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


def norm(config):
    if config.rmsnorm:
        return RMSNorm(config.n_embd, config.layer_norm_epsilon)
    return nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = norm(config)
        self.mlp = MLP(config)

    def forward(self, x, mask, cache=None, layer=0, rope=None):
        x = x + self.attn(self.ln_1(x), mask, cache, layer, rope)
        return x + self.mlp(self.ln_2(x))


LOGIT_CHUNK = 1 << 26  # logits computed at once by forward(targets=...): 64M floats, 256 MB in fp32


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        modules = dict(wte=nn.Embedding(config.vocab_size, config.n_embd))
        if not config.rope:  # RoPE models have no position table
            modules["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        modules.update(h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]), ln_f=norm(config))
        self.transformer = nn.ModuleDict(modules)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.transformer.wte.weight  # tied embeddings, as GPT-2
        self.grad_ckpt = False  # set True to recompute blocks in backward (training memory, not a config field)
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

    def forward(self, idx, valid=None, cache=None, last_only=False, targets=None):
        """idx (B, T) token ids -> fp32 logits (B, T, V), or (B, 1, V) with last_only.

        valid (B, T) bool: False marks left padding. cache: a KVCache to read from and append to.
        targets (B, T) token ids: return log p(targets[b, t] | idx[b, :t+1]) (B, T) in fp32 instead of logits,
        computed LOGIT_CHUNK logits at a time and recomputed in backward, so the (B, T, V) logits never exist
        at once (with a 150k vocabulary they would be the largest tensor of RL training).
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
        x = self.transformer.wte(idx)  # (B, T, C)
        rope = None
        if self.config.rope:  # the same positions as wpe would use, so left padding and the cache stay exact
            rope = rope_cos_sin(pos, self.config.n_embd // self.config.n_head, self.config.rope_theta)
        else:
            x = x + self.transformer.wpe(pos)
        for i, block in enumerate(self.transformer.h):
            if self.grad_ckpt and self.training and cache is None and torch.is_grad_enabled():
                x = checkpoint(block, x, mask, None, i, rope, use_reentrant=False)  # keeps only x per block
            else:
                x = block(x, mask, cache, i, rope)
        if cache is not None:
            cache.t = t0 + T
        if last_only:
            x = x[:, -1:]  # (B, 1, C): decoding needs only the next-token distribution
        x = self.transformer.ln_f(x)
        if targets is not None:
            return self._target_logprobs(x, targets)
        return self.lm_head(x).float()  # (B, T, V) in fp32 even under bf16 autocast

    def _target_logprobs(self, x, targets):
        def logp(h, t):  # (n, C), (n,) -> (n,)
            return F.log_softmax(self.lm_head(h).float(), dim=-1).gather(1, t[:, None])[:, 0]

        h, t = x.reshape(-1, x.size(-1)), targets.reshape(-1)  # (B*T, C), (B*T,)
        rows = max(1, LOGIT_CHUNK // self.config.vocab_size)
        out = [checkpoint(logp, h[i:i + rows], t[i:i + rows], use_reentrant=False) if torch.is_grad_enabled()
               else logp(h[i:i + rows], t[i:i + rows]) for i in range(0, len(t), rows)]
        return torch.cat(out).view(targets.shape)  # (B, T)

    @torch.no_grad()
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
        """Load a Hugging Face GPT-2, Llama or Qwen2 checkpoint: a local directory, or a hub name when online.
        The weights are fp32, whatever the checkpoint stores (cast with .to(torch.bfloat16) after loading)."""
        path = _resolve_hf_path(name_or_path)
        cfg_file = os.path.join(path, "config.json")
        if not os.path.isfile(cfg_file):
            raise FileNotFoundError(f"{path} has no config.json; expected a Hugging Face checkpoint directory")
        with open(cfg_file) as f:
            hf = json.load(f)
        model_type = hf.get("model_type")
        if model_type in ("llama", "qwen2"):
            return cls._from_llama(path, hf, cfg_file)
        if model_type != "gpt2":
            raise ValueError(f"{cfg_file}: model_type={model_type!r} (architectures={hf.get('architectures')}) "
                             f"is not supported; this loader reads gpt2, llama and qwen2 checkpoints")
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

    @classmethod
    def _from_llama(cls, path, hf, cfg_file):
        """LlamaForCausalLM / Qwen2ForCausalLM: every checkpoint tensor is checked against the shape config.json
        implies before it is copied (q/k/v_proj and gate/up_proj into row blocks of our fused c_attn, c_fc)."""
        config = _llama_config(hf, cfg_file)
        model = cls(config)
        sd_hf = _read_hf_weights(path)
        # LlamaModel/Qwen2Model checkpoints lack the "model." prefix; old ones store RoPE's inv_freq buffer;
        # a tied lm_head.weight is a copy of embed_tokens, which HF also ignores
        sd_hf = {(k if k.startswith(("model.", "lm_head.")) else "model." + k): v for k, v in sd_hf.items()
                 if not k.endswith("rotary_emb.inv_freq")
                 and not (k == "lm_head.weight" and config.tie_word_embeddings)}
        keys = _llama_keys(config)
        missing = sorted(set(keys) - set(sd_hf))
        extra = sorted(set(sd_hf) - set(keys))
        if missing or extra:
            raise ValueError(f"{path}: checkpoint keys do not match {hf['model_type']} with this config.json: "
                             f"missing {missing[:5]}, unexpected {extra[:5]}")
        sd = model.state_dict()
        with torch.no_grad():
            for k, (ours, row, shape) in keys.items():
                v = sd_hf[k]
                if tuple(v.shape) != shape:
                    raise ValueError(f"{path}: shape mismatch for {k}: checkpoint {tuple(v.shape)}, "
                                     f"expected {shape} from config.json")
                sd[ours][row:row + shape[0]].copy_(v)
        return model


def _llama_config(hf, cfg_file):
    """GPTConfig of a config.json of model_type llama or qwen2; missing keys take HF's class defaults."""
    mt = hf["model_type"]

    def need(key):
        if key not in hf:
            raise ValueError(f"{cfg_file}: model_type={mt!r} config lacks {key!r}")
        return hf[key]

    C, nh = need("hidden_size"), need("num_attention_heads")
    rope = hf.get("rope_scaling") or hf.get("rope_parameters") or {}  # transformers 5 nests rope_theta here
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    problems = [p for p, bad in [
        (f"hidden_act {hf.get('hidden_act')!r} (only silu)", hf.get("hidden_act", "silu") != "silu"),
        (f"rope_type {rope_type!r} (only plain RoPE, 'default')", rope_type != "default"),
        ("attention_bias / mlp_bias", bool(hf.get("attention_bias") or hf.get("mlp_bias"))),
        ("use_sliding_window", bool(hf.get("use_sliding_window"))),
        (f"head_dim {hf.get('head_dim')} != hidden_size / num_attention_heads", C % nh != 0
         or hf.get("head_dim") not in (None, C // nh)),
    ] if bad]
    if problems:
        raise ValueError(f"{cfg_file}: model_type={mt!r} variant not supported: {'; '.join(problems)}")
    return GPTConfig(
        block_size=hf.get("max_position_embeddings", 2048 if mt == "llama" else 32768),
        vocab_size=need("vocab_size"), n_layer=need("num_hidden_layers"), n_head=nh, n_embd=C, bias=False,
        layer_norm_epsilon=hf.get("rms_norm_eps", 1e-6),
        rope=True, rope_theta=float(hf.get("rope_theta", rope.get("rope_theta", 10000.0))), rmsnorm=True,
        swiglu=True, intermediate_size=need("intermediate_size"),
        n_kv_head=hf.get("num_key_value_heads") or (nh if mt == "llama" else 32),
        qkv_bias=mt == "qwen2", tie_word_embeddings=hf.get("tie_word_embeddings", False))


def _llama_keys(config):
    """HF key -> (our key, first row, shape) for LlamaForCausalLM / Qwen2ForCausalLM."""
    C, hd, I = config.n_embd, config.n_embd // config.n_head, config.intermediate_size
    kv = (config.n_kv_head or config.n_head) * hd
    keys = {"model.embed_tokens.weight": ("transformer.wte.weight", 0, (config.vocab_size, C)),
            "model.norm.weight": ("transformer.ln_f.weight", 0, (C,))}
    if not config.tie_word_embeddings:
        keys["lm_head.weight"] = ("lm_head.weight", 0, (config.vocab_size, C))
    for i in range(config.n_layer):
        hf, ours = f"model.layers.{i}.", f"transformer.h.{i}."
        keys[hf + "input_layernorm.weight"] = (ours + "ln_1.weight", 0, (C,))
        keys[hf + "post_attention_layernorm.weight"] = (ours + "ln_2.weight", 0, (C,))
        for name, row, n in (("q_proj", 0, C), ("k_proj", C, kv), ("v_proj", C + kv, kv)):
            keys[hf + f"self_attn.{name}.weight"] = (ours + "attn.c_attn.weight", row, (n, C))
            if config.qkv_bias:
                keys[hf + f"self_attn.{name}.bias"] = (ours + "attn.c_attn.bias", row, (n,))
        keys[hf + "self_attn.o_proj.weight"] = (ours + "attn.c_proj.weight", 0, (C, C))
        keys[hf + "mlp.gate_proj.weight"] = (ours + "mlp.c_fc.weight", 0, (I, C))
        keys[hf + "mlp.up_proj.weight"] = (ours + "mlp.c_fc.weight", I, (I, C))
        keys[hf + "mlp.down_proj.weight"] = (ours + "mlp.c_proj.weight", 0, (C, I))
    return keys


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
        return snapshot_download(name_or_path,  # weights, config, tokenizer files (tokenizer.py reads them)
                                 allow_patterns=["*.json", "*.safetensors", "*.bin", "*.txt", "*.jinja"])
    except Exception as e:
        raise FileNotFoundError(f"could not fetch {name_or_path!r} from the Hugging Face hub ({type(e).__name__}: "
                                f"{e}); install huggingface_hub and go online, or pass a local directory holding "
                                f"config.json and model.safetensors / pytorch_model.bin") from e


def _read_hf_weights(path):
    """Every tensor of a checkpoint directory: model.safetensors, sharded safetensors (model.safetensors.index.json
    maps each key to its shard file), or pytorch_model.bin (also sharded, pytorch_model.bin.index.json)."""
    def load_st(f):
        from safetensors.torch import load_file
        return load_file(f)

    def load_pt(f):
        return torch.load(f, map_location="cpu", weights_only=True)

    for name, load in (("model.safetensors", load_st), ("model.safetensors.index.json", load_st),
                       ("pytorch_model.bin", load_pt), ("pytorch_model.bin.index.json", load_pt)):
        f = os.path.join(path, name)
        if not os.path.isfile(f):
            continue
        if not name.endswith(".index.json"):
            return load(f)
        with open(f) as fh:
            shards = sorted(set(json.load(fh)["weight_map"].values()))
        sd = {}
        for s in shards:
            if not os.path.isfile(os.path.join(path, s)):
                raise FileNotFoundError(f"{f} names shard {s}, which is not in {path}")
            sd.update(load(os.path.join(path, s)))
        return sd
    raise FileNotFoundError(f"{path} has no model.safetensors or pytorch_model.bin (nor a sharded index of either)")


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
