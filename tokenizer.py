r"""
tokenizer.py (optional reading): tokenizers with one interface: encode(text) -> ids, decode(ids) -> str, eos_id,
pad_id, vocab_size, describe() (stored in checkpoints; from_description(d) rebuilds the tokenizer).
  - CharTokenizer(alphabet): one id per character (toy tasks), after <pad> (0) and <eot> (1, end of turn).
  - GPT2Tokenizer(): tiktoken's "gpt2"; <|endoftext|> is end of turn and padding (masked by position, not id).
  - HFTokenizer(dir): a checkpoint's byte-level BPE (GPT-2, Qwen2, Llama-3 style) as a tiktoken Encoding of its
    tokenizer.json (or vocab.json + merges.txt of GPT2Tokenizer / Qwen2Tokenizer): ranks = vocabulary ids,
    pat_str = the pre-tokenizer's regex, special tokens = the added tokens, cut out of the text first (longest
    match) as tokenizer(text, add_special_tokens=False) does. Exact to `tokenizers`, or refused with the reason:
      1. tiktoken joins the adjacent pair whose concatenation has the lowest id (a pre-token in the vocabulary:
         whole); HF joins the pair its merges list first. They agree when merge results' ids rise with the merge
         order and HF's merges rebuild every token from its bytes (both checked; the second also makes whole tokens
         agree). Proof: where they first differ, tiktoken joins x, y into a token t whose merge is another pair; the
         parts inside t grew as HF's merges on t alone would, which then stop at [x, y], never [t]. Several merges
         per token (Llama-3's, converted from Meta's tiktoken ranks): with ignore_merges, ids never falling in merge
         order and every token a merge of two of lower id, the ids are the original ranks and this Encoding is the
         original tokenizer (which ignore_merges is HF's way to reproduce); refused without ignore_merges.
      2. NFC (Qwen2's normalizer) is unicodedata's, Unicode 14 on Python 3.11: later characters may differ.
      3. HF keeps text its regex does not match, tiktoken drops it: the pattern gets a last alternative taking
         it whole. Rust's regex crate agrees with HF's Oniguruma on \s, \p{L}, \p{N} (Unicode versions aside).
      4. Also refused: other normalizers, pre-tokenizers, models, decoders; lstrip/rstrip/single_word added
         tokens; vocabulary entries that are no byte, merge result or added token; a missing byte.
    eos_id: the chat template's end-of-turn token, else eos_token; pad_id: pad_token, else eos_id. The template
    is not run: its tokens pick ChatML (Qwen2) or Llama-3's format (chat_prompt, chat_followup), else plain text.

Try it:  python -c "from tokenizer import CharTokenizer as C; t = C('0123456789+-='); print(t.encode('12+3='))"
"""
import json
import os
import re
import unicodedata


class CharTokenizer:
    def __init__(self, alphabet):
        self.alphabet = "".join(sorted(set(alphabet)))
        self.pad_id, self.eos_id, self.vocab_size = 0, 1, len(self.alphabet) + 2  # <pad>, <eot>, the characters
        self.stoi = {c: i + 2 for i, c in enumerate(self.alphabet)}

    def encode(self, text):
        try:
            return [self.stoi[c] for c in text]
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in the tokenizer's alphabet {self.alphabet!r}") from None

    def decode(self, ids):  # <pad> and <eot> are dropped: the end of a turn is structure, not text
        return "".join(self.alphabet[i - 2] if 2 <= i < self.vocab_size else "" for i in map(int, ids))

    def describe(self):
        return {"kind": "char", "alphabet": self.alphabet}


class GPT2Tokenizer:
    def __init__(self):
        import tiktoken
        self.enc = tiktoken.get_encoding("gpt2")
        self.vocab_size, self.eos_id, self.pad_id = self.enc.n_vocab, self.enc.eot_token, self.enc.eot_token  # 50256

    def encode(self, text):
        return self.enc.encode_ordinary(text)  # special-token text in a problem is plain text, never <|endoftext|>

    def decode(self, ids):
        return self.enc.decode([int(i) for i in ids if int(i) != self.eos_id])

    def describe(self):
        return {"kind": "tiktoken", "name": "gpt2"}


def from_description(d):
    """Rebuild a tokenizer from the dict stored in a checkpoint (HFTokenizer: its directory's absolute path)."""
    kind = (d or {}).get("kind")
    if kind in ("char", "hf"):
        return CharTokenizer(d["alphabet"]) if kind == "char" else HFTokenizer(d["path"])
    if kind == "tiktoken" and d.get("name") == "gpt2":
        return GPT2Tokenizer()
    raise ValueError(f"unknown tokenizer description {d!r}; expected kind 'char', 'tiktoken' (gpt2) or 'hf'")


GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
QWEN2_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                 r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
# byte-level BPE's character -> byte table: printable Latin-1 stands for itself, the other 68 bytes from U+0100 up
_KEEP = [*range(33, 127), *range(161, 173), *range(174, 256)]
CHAR_BYTE = {chr(b): b for b in _KEEP} | {chr(256 + n): b for n, b in enumerate(sorted({*range(256)} - {*_KEEP}))}


def _read(*parts, parse=str):  # a file's text (parsed), or None when there is none
    if os.path.isfile(os.path.join(*parts)):
        with open(os.path.join(*parts), encoding="utf-8") as f:
            return parse(f.read())


def _bpe(word, rank):  # HF's BPE of one pre-token: join the adjacent pair listed first in the merges, repeat
    parts = list(word)
    while len(parts) > 1 and min(r := [rank.get(p, len(rank)) for p in zip(parts, parts[1:])]) < len(rank):
        i = r.index(min(r))
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return parts


def _load(path, cfg):
    """(tiktoken Encoding, vocab, added tokens, nfc, ignore_merges) of a checkpoint's files, checked (docstring)."""
    import tiktoken
    tj, cls = _read(path, "tokenizer.json", parse=json.loads), cfg.get("tokenizer_class")
    if tj is None:  # the slow tokenizer's files: its class's regex lives in code (Qwen2Tokenizer's also NFC)
        if cls not in ("Qwen2Tokenizer", "GPT2Tokenizer") or not os.path.isfile(os.path.join(path, "merges.txt")):
            raise FileNotFoundError(f"{path} has no tokenizer.json, nor vocab.json + merges.txt of tokenizer_class "
                                    f"Qwen2Tokenizer or GPT2Tokenizer (tokenizer_class {cls!r})")
        merges = [m for m in _read(path, "merges.txt").split("\n") if m and not m.startswith("#version")]
        vocab, added = _read(path, "vocab.json", parse=json.loads), [
            {"id": int(i), **a} for i, a in (cfg.get("added_tokens_decoder") or {}).items()]
        nfc, ignore_merges = cls == "Qwen2Tokenizer", False
        pattern = QWEN2_PATTERN if nfc else GPT2_PATTERN
    else:
        norm, pre, model, dec = (tj.get(k) or {} for k in ("normalizer", "pre_tokenizer", "model", "decoder"))
        *split, bl = (pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]) or [{}]
        pats = [s.get("pattern", {}).get("Regex") for s in split] + [GPT2_PATTERN] * bl.get("use_regex", True)
        known = bl.get("type") == "ByteLevel" and not bl.get("add_prefix_space") and all(  # ByteLevel's regex: GPT-2's
            s.get("type") == "Split" and s.get("behavior") == "Isolated" and not s.get("invert") for s in split)
        opts = [k for k in ("continuing_subword_prefix", "end_of_word_suffix", "byte_fallback", "dropout")
                if model.get(k)]
        if norm not in ({}, {"type": "NFC"}) or model.get("type") != "BPE" or opts or dec.get("type") != "ByteLevel" \
                or not known or len(pats) != 1 or not pats[0]:
            raise ValueError(f"{path}: tokenizer.json's normalizer {norm}, pre-tokenizer {pre}, model "
                             f"{model.get('type')} {opts} or decoder {dec} is not supported (byte-level BPE only)")
        vocab, merges, added = model["vocab"], model["merges"], tj.get("added_tokens", [])
        pattern, nfc, ignore_merges = pats[0], bool(norm), bool(model.get("ignore_merges"))
    merges = [m.split(" ") if isinstance(m, str) else m for m in merges]  # "a b" or ["a", "b"]
    rank, last, several = {}, -1, False  # (left, right) -> position in the merges; the previous merge's token id
    for i, (a, b) in enumerate(merges):
        r = vocab.get(a + b, -2)  # -2: no such token
        if r < last or r == last and not ignore_merges or set(a + b) - CHAR_BYTE.keys():
            raise ValueError(f"{path}: merge {i} ({a!r}, {b!r}) makes {a + b!r}, not a byte-level token with an id "
                             f"above the previous merge's (or equal to it, with ignore_merges: docstring 1)")
        rank[a, b], last, several = i, r, several or r == last
    made, specials = {a + b for a, b in merges}, {a["content"]: a["id"] for a in added}
    ranks = {bytes(CHAR_BYTE[c] for c in t): i for t, i in vocab.items() if t in made or t in CHAR_BYTE}
    missing, rank_ids = [b for b in range(256) if bytes([b]) not in ranks], set(ranks.values())
    bad = [f"bytes {missing[:8]} have no token"] * bool(missing)
    odd = vocab.keys() - made - specials.keys() - CHAR_BYTE.keys()  # tokens tiktoken would not have
    bad += [f"token {t!r} is no byte, merge result or added token" for t in odd][:1]
    bad += [f"added token {a['content']!r} has {k}" for a in added for k in ("lstrip", "rstrip", "single_word")
            if a.get(k)]
    bad += [f"HF decodes added token {t!r} by the byte table" for t, i in specials.items()  # tiktoken as UTF-8
            if i not in rank_ids and not t.isascii() and set(t) <= CHAR_BYTE.keys()]
    # docstring 1: several merges per token: each token joins two of lower id; one: HF's BPE rebuilds each token
    low = {a + b for a, b in merges if max(vocab.get(a, 1 << 62), vocab.get(b, 1 << 62)) < vocab[a + b]}
    bad += ([f"token {t!r} is no merge of two tokens of lower id" for t in made - low] if several else
            [f"its merges do not rebuild token {t!r}" for t in made if len(t) > 2 and _bpe(t, rank) != [t]])[:1]
    if bad:
        raise ValueError(f"{path}: tiktoken cannot reproduce this tokenizer exactly: {'; '.join(bad[:3])}")
    pat = f"(?:{pattern})|(?:(?!(?:{pattern}))[\\s\\S])+"  # docstring 3: an unmatched stretch is one pre-token
    enc = tiktoken.Encoding(f"hf:{path}", pat_str=pat, mergeable_ranks=ranks, special_tokens=specials)
    return enc, vocab, added, nfc, ignore_merges


def _alternation(tokens):  # longest first, so the leftmost match is the longest (HF's rule); (?!) matches nothing
    return re.compile("(" + ("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)) or "(?!)") + ")")


class HFTokenizer:
    def __init__(self, path):
        self.path, cfg = os.path.abspath(path), _read(path, "tokenizer_config.json", parse=json.loads) or {}
        self.enc, vocab, added, self.nfc, self.ignore_merges = _load(path, cfg)
        self.added = {a["content"]: a["id"] for a in added}
        self.special_ids = {a["id"] for a in added if a.get("special")}
        ids = {**vocab, **self.added}  # token text -> id
        self.vocab_size, self.known = self.enc.n_vocab, set(ids.values())
        self.raw_added = _alternation([a["content"] for a in added if not a.get("normalized")])
        self.norm_added = _alternation([a["content"] for a in added if a.get("normalized")])
        t = cfg.get("chat_template") or _read(path, "chat_template.jinja") or ""  # transformers 5's own file
        t = next((x["template"] for x in t if x.get("name") == "default"), "") if isinstance(t, list) else t
        need = {"chatml": ["<|im_start|>", "<|im_end|>"],  # the last token ends a turn
                "llama3": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]}
        self.template = next((k for k, tokens in need.items() if tokens[0] in t), None)
        if set(need.get(self.template, ())) - self.added.keys():
            raise ValueError(f"{path}: the chat template uses {need[self.template]}, which are not all added tokens")
        m = re.search(r"<\|im_start\|>system(?:\\n|\n)([^'\"{}<]*)<\|im_end\|>", t)  # e.g. "You are Qwen, ..."
        self.default_system = m.group(1) if m and self.template == "chatml" else None
        eos, pad, bos = (v.get("content") if isinstance(v, dict) else v
                         for v in (cfg.get("eos_token"), cfg.get("pad_token"), cfg.get("bos_token")))
        self.eos_id = ids.get(need[self.template][-1] if self.template else eos)
        if self.eos_id is None:
            raise ValueError(f"{path}: no end-of-turn token (chat template {self.template}, eos_token {eos!r}); "
                             f"set eos_token in tokenizer_config.json")
        self.pad_id, self.bos = ids.get(pad, self.eos_id), bos or "<|begin_of_text|>"

    def encode(self, text):
        """Token ids of text as HF's tokenizer(text, add_special_tokens=False); normalized added tokens after NFC."""
        ids = []
        for i, raw in enumerate(self.raw_added.split(text)):  # plain, added, plain, ...
            pieces = [raw] if i % 2 else self.norm_added.split(unicodedata.normalize("NFC", raw) if self.nfc else raw)
            for j, piece in enumerate(pieces):
                ids += [self.added[piece]] if i % 2 or j % 2 else self.enc.encode_ordinary(piece)
        return ids

    def decode(self, ids, skip_special=True):
        """Text of ids (special tokens dropped unless skip_special=False); broken UTF-8 becomes U+FFFD, as HF's."""
        ids = [int(i) for i in ids if int(i) in self.known and not (skip_special and int(i) in self.special_ids)]
        return self.enc.decode_bytes(ids).decode("utf-8", errors="replace")

    def chat_prompt(self, user, system=None):
        """ChatML (default system message: the template's) or Llama-3 text of a first user turn, up to the reply."""
        system = self.default_system if system is None else system
        if self.template == "chatml":
            head = "" if system is None else f"<|im_start|>system\n{system}<|im_end|>\n"
            return head + self.chat_followup(user)[1:]  # without the newline that follows an <|im_end|>
        if self.template == "llama3":  # the template strips every message
            head = f"<|start_header_id|>system<|end_header_id|>\n\n{system.strip()}<|eot_id|>" if system else ""
            return self.bos + head + self.chat_followup(user)
        return (f"{system}\n\n" if system else "") + user

    def chat_followup(self, user):
        """Text after an assistant turn's end token, through the next user turn, up to the next reply."""
        return {"chatml": f"\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n",
                "llama3": f"<|start_header_id|>user<|end_header_id|>\n\n{user.strip()}<|eot_id|>"
                          f"<|start_header_id|>assistant<|end_header_id|>\n\n"}.get(self.template, f"\n\n{user}\n\n")

    def describe(self):
        return {"kind": "hf", "path": self.path}
