"""
model.py: the one model class, a GPT-2 style transformer (nanoGPT's layout and names) whose config also switches
on the Llama / Qwen2 family's pieces (each default keeps GPT-2, so old checkpoints' config dicts load unchanged);
a KV-cached batched sampler (generate); Hugging Face loading (from_pretrained, in hf.py); checkpoint files are
runs.py's. Left padding: valid (B, T) marks real tokens; position ids count real tokens and padded keys are
masked, so a padded row produces exactly the tokens it produces alone.

Departures from nanoGPT / HF, numbered:
  1. No dropout: RL fine-tuning and the small runs do not use it, and sampling and training log-probs agree.
  2. A prompt longer than the context raises ValueError, not cropped (a cropped problem is graded wrongly).
  3. Llama/Qwen2: plain RoPE only (no Llama-3.1 or YaRN scaling), no sliding window, no attention/mlp bias;
     RMSNorm's eps is layer_norm_epsilon (one eps field for either norm).
  4. RoPE's angles are computed in fp32 from the position ids on every forward (no cached table, so bf16 never
     rounds them); grouped-query attention: SDPA's enable_gqa (torch >= 2.5), or query groups when decoding on a
     CPU; never repeated keys and values.

Try it:  python -c "from model import GPT, GPTConfig; m = GPT(GPTConfig()); print(m.num_params())"
"""
import math
from contextlib import nullcontext
from dataclasses import dataclass, fields

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
    known = sorted(f.name for f in fields(GPTConfig))
    if set(d) - set(known):
        raise ValueError(f"unknown config key(s) {sorted(set(d) - set(known))} in {where}; known keys: {known}")
    return GPTConfig(**d)


class KVCache:
    """Keys (after RoPE) and values of every layer, (n_layer, B, n_kv_head, max_len, head_dim), written in place
    (empty, not zeros: a position < t is written before it is read). valid (B, max_len): cached real tokens, not left
    padding; n_real (B,): their count (the next position id); t: cached positions; padded: any cached key padding."""

    def __init__(self, config, batch_size, max_len, device, dtype):
        shape = (config.n_layer, batch_size, config.n_kv_head or config.n_head, max_len, config.n_embd // config.n_head)
        self.k, self.v = torch.empty(shape, device=device, dtype=dtype), torch.empty(shape, device=device, dtype=dtype)
        self.valid = torch.zeros(batch_size, max_len, dtype=torch.bool, device=device)
        self.n_real = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.t, self.padded = 0, False


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
        self.n_head, self.n_kv_head = config.n_head, config.n_kv_head or config.n_head
        hd = config.n_embd // config.n_head
        self.sizes = [config.n_embd, self.n_kv_head * hd, self.n_kv_head * hd]  # q, k, v widths
        self.c_attn = nn.Linear(config.n_embd, sum(self.sizes), bias=config.bias or config.qkv_bias)  # q, k, v
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x, mask, cache=None, layer=0, rope=None):
        B, T, C = x.shape
        hd, nkv = C // self.n_head, self.n_kv_head
        q, k, v = self.c_attn(x).split(self.sizes, dim=2)  # (B, T, C), 2 x (B, T, nkv*hd)
        q = q.view(B, T, self.n_head, hd).transpose(1, 2)  # (B, nh, T, hd)
        k, v = (z.view(B, T, nkv, hd).transpose(1, 2) for z in (k, v))  # 2 x (B, nkv, T, hd)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:  # write this step's keys/values in place, then attend over everything cached so far
            t0 = cache.t
            cache.k[layer, :, :, t0:t0 + T], cache.v[layer, :, :, t0:t0 + T] = k, v
            k, v = cache.k[layer, :, :, :t0 + T], cache.v[layer, :, :, :t0 + T]  # 2 x (B, nkv, t0+T, hd)
        if cache is not None and T == 1 and x.device.type == "cpu":  # one query: 2 matmuls beat SDPA's CPU kernel
            w = q.view(B, nkv, -1, hd) @ k.transpose(-1, -2) * hd ** -0.5  # (B, nkv, nh/nkv, Tk): GQA as groups
            w = (w if mask is None else w.masked_fill(~mask, float("-inf"))).float().softmax(-1).to(v.dtype)
            return self.c_proj((w @ v).view(B, T, C))  # (B, nkv, nh/nkv, hd) -> (B, 1, C)
        # mask None: causality only. SDPA's is_causal aligns the query block to the first key: right for a prefill
        # (t0 = 0), not needed for one decoding query. GQA: query head h reads key/value head h // (nh / nkv)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and T > 1,
                                           enable_gqa=nkv != self.n_head)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))  # (B, T, C)


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.swiglu, hidden = config.swiglu, config.intermediate_size or 4 * config.n_embd
        self.c_fc = nn.Linear(config.n_embd, (2 if self.swiglu else 1) * hidden, bias=config.bias)  # SwiGLU: gate, up
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)

    def forward(self, x):
        if self.swiglu:
            gate, up = self.c_fc(x).chunk(2, dim=-1)  # 2 x (B, T, hidden)
            return self.c_proj(F.silu(gate) * up)
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))  # GPT-2's "gelu_new"


class RMSNorm(nn.Module):
    """weight * x / rms(x), in fp32 and cast back before the weight, as HF Llama/Qwen2 (bf16 would lose precision)."""

    def __init__(self, n, eps):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(n))

    def forward(self, x):
        xf = x.float()
        return self.weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


def norm(config):
    return (RMSNorm(config.n_embd, config.layer_norm_epsilon) if config.rmsnorm
            else nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1, self.attn, self.ln_2, self.mlp = norm(config), CausalSelfAttention(config), norm(config), MLP(config)

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
        """idx (B, T) token ids -> fp32 logits (B, T, V), or (B, 1, V) with last_only. valid (B, T) bool: False
        marks left padding. cache: a KVCache to read from and append to. targets (B, T): log p(targets[b, t] | idx[b,
        :t+1]) (B, T) in fp32 instead, LOGIT_CHUNK logits at a time (recomputed in backward), never all (B, T, V)."""
        B, T = idx.shape
        t0 = cache.t if cache is not None else 0
        if t0 + T > self.config.block_size:
            raise ValueError(f"sequence of {t0 + T} tokens exceeds the model's context of "
                             f"{self.config.block_size} tokens (block_size)")
        if cache is not None and T == 1 and valid is None:  # decoding: one real token per row, no mask built
            pos = cache.n_real[:, None].clone()  # (B, 1): a copy, n_real advances below
            cache.valid[:, t0] = True
            cache.n_real += 1
            mask = cache.valid[:, None, None, :t0 + 1] if cache.padded else None  # (B, 1, 1, Tk), a cache view
        elif cache is None and valid is None:  # training, scoring: no mask, no host sync (torch.compile's whole graph)
            pos, mask = torch.arange(T, device=idx.device)[None], None  # (1, T)
        else:
            if valid is None:
                valid = torch.ones(B, T, dtype=torch.bool, device=idx.device)
            # position ids count real tokens only, so left padding does not shift a row's positions
            n_before = cache.n_real[:, None] if cache is not None else 0
            pos = (n_before + valid.long().cumsum(1) - 1).clamp(min=0)  # (B, T)
            all_real, key_valid = bool(valid.all()), valid
            if cache is not None:
                cache.valid[:, t0:t0 + T] = valid
                cache.n_real += valid.long().sum(1)
                key_valid, cache.padded = cache.valid[:, :t0 + T], cache.padded or not all_real  # (B, Tk)
            mask = None  # plain causal attention (fast path) when nothing is padded
            if t0 > 0 or not all_real:
                q_abs = torch.arange(t0, t0 + T, device=idx.device)[:, None]  # (T, 1)
                k_abs = torch.arange(t0 + T, device=idx.device)[None, :]  # (1, Tk)
                # causal, real keys only; a padding query also sees itself (its softmax is never empty; output unused)
                mask = ((k_abs <= q_abs)[None] & key_valid[:, None, :]) | (k_abs == q_abs)[None]  # (B, T, Tk)
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

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, valid=None, eos_id=None,
                 pad_id=None, generator=None, logprobs=False):
        """Continue each row of idx (B, T) by up to max_new_tokens -> (B, T + n): batched prefill into a KVCache, then
        one token per step (temperature=0: greedy; generator: a seeded torch.Generator). With eos_id, a row that
        emitted it continues with pad_id (default eos_id); decoding stops once every row has ended. logprobs=True
        also returns (B, n) log-probs of the new tokens at temperature 1 (the policy RL differentiates), 0 after."""
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
        """An HF GPT-2, Llama or Qwen2 checkpoint (a directory, or a hub name when online) in fp32 (hf.py loads it)."""
        import hf  # here, not at the top: hf.py imports this module
        return hf.load(name_or_path, cls)


def sample_next(logits, temperature=1.0, top_k=None, generator=None):
    """Next token ids (B,) from logits (B, V); temperature=0: argmax. Sampling is by inverse CDF, one uniform per
    row located in the cumulative probabilities: torch.multinomial's distribution without its one exponential
    variate per vocabulary entry, which dominates decoding time on a CPU at GPT-2's 50k-token vocabulary."""
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


def get_device(override=None):
    """cuda -> mps -> cpu, unless override ('cpu', 'cuda', 'cuda:1', 'mps') names one."""
    auto = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    return torch.device(override or auto)


def autocast(device):
    """bf16 autocast on a CUDA device that supports it; full fp32 everywhere else (CPU bf16 is slow here)."""
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else nullcontext()
