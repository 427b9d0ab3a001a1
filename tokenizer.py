r"""
tokenizer.py: the three tokenizers of the project behind one tiny interface.

  encode(text) -> list[int]     decode(ids) -> str     eos_id, pad_id, vocab_size     describe() -> dict

  - CharTokenizer: one id per character of a task alphabet (the toy tasks), plus two special tokens:
    <pad> (id 0, never sampled for real text, masked out everywhere) and <eot> (end of turn; the sampler
    stops a turn on it). Small vocabularies make the from-scratch toy models cheap.
  - GPT2Tokenizer: GPT-2's BPE through tiktoken.get_encoding("gpt2"), for Hugging Face GPT-2 checkpoints.
    GPT-2 has no padding token; <|endoftext|> (50256) serves as both end of turn and padding, which is safe
    because padding is always masked by position, never recognised by id.
  - HFTokenizer(dir): the byte-level BPE tokenizer of a Hugging Face checkpoint (Qwen2, Llama-3, GPT-2 style),
    read from its own tokenizer.json (or vocab.json + merges.txt + tokenizer_config.json), pure Python and
    standard library only, and exact to the `tokenizers` library on encode and decode:
      1. added tokens (tokenizer.json's added_tokens) are cut out first, longest match at the leftmost
         position, as HF does: those with normalized=false on the raw text, the others after normalization;
      2. the normalizer (none, or NFC as Qwen2's), then the pre-tokenizer regex (Qwen2's, Llama-3's, GPT-2's,
         whatever the file says), then byte-level BPE with the file's merge ranks (and Llama-3's
         ignore_merges: a pre-token that is itself in the vocabulary is one token);
      3. decode maps each token back to its bytes (a token with a character outside the byte alphabet is its
         own UTF-8, as HF's ByteLevel decoder does) and undecodable bytes become U+FFFD; special tokens are
         dropped unless skip_special=False.
    The pattern runs on the standard library's `re` (3.11+: possessive quantifiers, atomic groups): its
    \p{L} / \p{N} classes, which `re` lacks, are spelled out from unicodedata, and \s / \S are spelled out
    as Oniguruma's whitespace (Python's \s also matches U+001C..U+001F). So the third-party `regex` module
    is not needed. eos_id is the end-of-turn token of the chat template (below), else tokenizer_config's
    eos_token; pad_id is its pad_token, else eos_id (padding is masked by position, never by id).
    Chat templates: the checkpoint's Jinja template is not run; it only selects one of two formats written
    out here, by the tokens it uses: ChatML (`<|im_start|>role\n...<|im_end|>\n`, Qwen2, with the
    template's default system message when it has one) or the Llama-3 header format
    (`<|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>`, after <|begin_of_text|>). Any other
    template, or none (a base model), gives plain text. chat_prompt(user) is the first turn up to the
    assistant's header; chat_followup(user) is what follows the end of an assistant turn, up to the next
    assistant header. encode() itself never adds BOS/EOS (tokenizer.json's post-processor is not applied).

`describe()` is what our checkpoints store; `from_description(d)` rebuilds the tokenizer from it (HFTokenizer:
the checkpoint directory's absolute path, so the directory must stay where it was).
Offline use of the GPT-2 files: TIKTOKEN_CACHE_DIR=../shared/tiktoken_cache (or any cache holding them).

Try it:  python -c "from tokenizer import CharTokenizer as C; t = C('0123456789+-='); print(t.encode('12+3='))"
"""
import functools
import json
import os
import re
import unicodedata


class CharTokenizer:
    specials = ("<pad>", "<eot>")

    def __init__(self, alphabet):
        chars = sorted(set(alphabet))
        self.alphabet = "".join(chars)
        self.pad_id, self.eos_id = 0, 1
        self.stoi = {c: i + len(self.specials) for i, c in enumerate(chars)}
        self.itos = {i: c for c, i in self.stoi.items()}
        self.vocab_size = len(chars) + len(self.specials)

    def encode(self, text):
        try:
            return [self.stoi[c] for c in text]
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in the tokenizer's alphabet "
                             f"{self.alphabet!r}") from None

    def decode(self, ids):
        """Text of the ids; <pad> is dropped, <eot> is dropped (the end of a turn is structure, not text)."""
        return "".join(self.itos.get(int(i), "") for i in ids)

    def describe(self):
        return {"kind": "char", "alphabet": self.alphabet}


class GPT2Tokenizer:
    def __init__(self):
        import tiktoken
        self.enc = tiktoken.get_encoding("gpt2")
        self.eos_id = self.pad_id = self.enc.eot_token  # 50256, <|endoftext|>
        self.vocab_size = self.enc.n_vocab  # 50257

    def encode(self, text):
        return self.enc.encode_ordinary(text)  # special-token text in a problem is plain text, never <|endoftext|>

    def decode(self, ids):
        return self.enc.decode([int(i) for i in ids if int(i) != self.eos_id])

    def describe(self):
        return {"kind": "tiktoken", "name": "gpt2"}


def from_description(d):
    """Rebuild a tokenizer from the dict stored in a checkpoint."""
    kind = (d or {}).get("kind")
    if kind == "char":
        return CharTokenizer(d["alphabet"])
    if kind == "tiktoken" and d.get("name") == "gpt2":
        return GPT2Tokenizer()
    if kind == "hf":
        return HFTokenizer(d["path"])
    raise ValueError(f"unknown tokenizer description {d!r}; expected kind 'char', 'tiktoken' (gpt2) or 'hf'")


# ----------------------------------------------------------------------------------------------------------
# Hugging Face byte-level BPE

# the pre-tokenizer patterns of tokenizer classes that keep theirs in code, not in tokenizer.json
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
QWEN2_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                 r"""\s*[\r\n]+|\s+(?!\S)|\s+""")


@functools.lru_cache(maxsize=None)
def _category(name):
    r"""The body of a [...] class (\U escapes, ranges) of every code point in a unicodedata general category:
    "L" (letters, \p{L}), "N", "Z", or a two-letter one such as "Lu"."""
    runs, start = [], None
    for cp in range(0x110001):
        inside = cp < 0x110000 and unicodedata.category(chr(cp)).startswith(name)
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            runs.append(f"\\U{start:08x}" + (f"-\\U{cp - 1:08x}" if cp - 1 > start else ""))
            start = None
    return "".join(runs)


def _whitespace():
    r"""Oniguruma's \s (HF tokenizers' regex engine): \t..\r, U+0085 and the Z categories (Zs, Zl, Zp)."""
    return "\\t\\n\\x0b\\x0c\\r\\x85" + _category("Z")


def to_python_regex(pattern):
    r"""An Oniguruma pattern (tokenizer.json) as a standard-library `re` pattern: \p{X} / \P{X} and \s / \S
    become explicit classes (inside [...] they are inlined); everything else means the same in both."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            e = pattern[i + 1]
            if e in "pP" and pattern[i + 2:i + 3] == "{":
                j = pattern.index("}", i)
                body, i = _category(pattern[i + 3:j]), j + 1
            elif e in "sS":
                body, i = _whitespace(), i + 2
            else:
                out.append(pattern[i:i + 2])
                i += 2
                continue
            if e in "PS" and in_class:
                raise ValueError(f"pre-tokenizer pattern {pattern!r}: \\{e} inside [...] is not supported")
            out.append(body if in_class else f"[^{body}]" if e in "PS" else f"[{body}]")
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class and out[-1] not in ("[", "[^"):
            in_class = False
        out.append(c + ("^" if c == "[" and pattern[i + 1:i + 2] == "^" else ""))
        i += 2 if c == "[" and pattern[i + 1:i + 2] == "^" else 1
    return "".join(out)


@functools.lru_cache(maxsize=None)
def _bytes_to_unicode():
    """GPT-2's byte -> printable character table of byte-level BPE: printable Latin-1 bytes stand for
    themselves, the other 68 bytes (controls, space, ...) are shifted to U+0100 upwards."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), ord("\xff") + 1)]
    table, n = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return table


def _read_json(path):
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _token_text(t):
    """A special token in tokenizer_config.json: a string, or a dict with 'content'."""
    return t.get("content") if isinstance(t, dict) else t


class HFTokenizer:
    def __init__(self, path):
        self.path = os.path.abspath(path)
        cfg = _read_json(os.path.join(path, "tokenizer_config.json")) or {}
        tj = _read_json(os.path.join(path, "tokenizer.json"))
        if tj is not None:
            vocab, merges, added, pattern, self.nfc, self.ignore_merges = self._parse_tokenizer_json(tj)
        elif os.path.isfile(os.path.join(path, "vocab.json")) and os.path.isfile(os.path.join(path, "merges.txt")):
            vocab, merges, added, pattern, self.nfc, self.ignore_merges = self._parse_vocab_merges(path, cfg)
        else:
            raise FileNotFoundError(f"{path} has no tokenizer.json, nor vocab.json + merges.txt")
        self.vocab = vocab  # byte-level token text -> id
        self.ranks = {tuple(m): r for r, m in enumerate(merges)}  # (left, right) -> merge priority
        self.id_to_token = {i: t for t, i in vocab.items()}
        for a in added:
            if a.get("lstrip") or a.get("rstrip") or a.get("single_word"):
                raise ValueError(f"{path}: added token {a['content']!r} uses lstrip/rstrip/single_word, "
                                 f"which this tokenizer does not implement")
            self.id_to_token[a["id"]] = a["content"]
        self.added = {a["content"]: a["id"] for a in added}
        self.special_ids = {a["id"] for a in added if a.get("special")}
        # added tokens, longest first so that the regex's leftmost match is also the longest (HF's rule)
        self.raw_added = self._alternation([a["content"] for a in added if not a.get("normalized")])
        self.norm_added = self._alternation([a["content"] for a in added if a.get("normalized")])
        self.pattern = re.compile(to_python_regex(pattern))
        self.byte_enc = _bytes_to_unicode()
        self.byte_dec = {c: b for b, c in self.byte_enc.items()}
        self.cache = {}
        self.vocab_size = max(self.id_to_token) + 1
        self.template = self._template_kind(cfg)
        self.default_system = None
        if self.template == "chatml":  # e.g. Qwen2.5's "You are Qwen, created by Alibaba Cloud. ..."
            m = re.search(r"<\|im_start\|>system(?:\\n|\n)([^'\"{}<]*)<\|im_end\|>", self._template_text(cfg))
            self.default_system = m.group(1) if m else None
        end = {"chatml": "<|im_end|>", "llama3": "<|eot_id|>"}.get(self.template) or _token_text(cfg.get("eos_token"))
        if end not in self.added and end not in self.vocab:
            raise ValueError(f"{path}: no end-of-turn token (chat template {self.template}, eos_token "
                             f"{_token_text(cfg.get('eos_token'))!r}); set eos_token in tokenizer_config.json")
        self.eos_id = self.added.get(end, self.vocab.get(end))
        pad = _token_text(cfg.get("pad_token"))
        self.pad_id = self.added.get(pad, self.vocab.get(pad, self.eos_id))
        self.bos = _token_text(cfg.get("bos_token")) or "<|begin_of_text|>"

    # -------------------------------------------------------------------- reading the files

    @staticmethod
    def _parse_tokenizer_json(tj):
        def unsupported(what):
            return ValueError(f"tokenizer.json: {what} is not supported (byte-level BPE as GPT-2, Qwen2, Llama-3)")

        norm = tj.get("normalizer")
        if norm not in (None, {"type": "NFC"}):
            raise unsupported(f"normalizer {norm}")
        pre = tj.get("pre_tokenizer") or {}
        steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
        pattern = None
        for st in steps:
            if st.get("type") == "Split" and "Regex" in st.get("pattern", {}) and st.get("behavior") == "Isolated" \
                    and not st.get("invert"):
                pattern = st["pattern"]["Regex"]
            elif st.get("type") == "ByteLevel" and not st.get("add_prefix_space"):
                if st.get("use_regex", True):  # GPT-2: the byte-level step splits with GPT-2's own pattern
                    pattern = GPT2_PATTERN
            else:
                raise unsupported(f"pre-tokenizer step {st}")
        if pattern is None or steps[-1].get("type") != "ByteLevel":
            raise unsupported(f"pre-tokenizer {pre} (expected a Split regex, then ByteLevel)")
        model = tj.get("model") or {}
        if model.get("type") != "BPE" or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix") \
                or model.get("byte_fallback") or model.get("dropout"):
            raise unsupported(f"model of type {model.get('type')} with these options")
        if (tj.get("decoder") or {"type": "ByteLevel"}).get("type") != "ByteLevel":
            raise unsupported(f"decoder {tj.get('decoder')}")
        merges = [m.split(" ") if isinstance(m, str) else m for m in model["merges"]]  # "a b" or ["a", "b"]
        return (model["vocab"], merges, tj.get("added_tokens", []), pattern, norm is not None,
                bool(model.get("ignore_merges")))

    @staticmethod
    def _parse_vocab_merges(path, cfg):
        cls = cfg.get("tokenizer_class")
        if cls not in ("Qwen2Tokenizer", "GPT2Tokenizer"):
            raise ValueError(f"{path}: vocab.json + merges.txt with tokenizer_class {cls!r}: only Qwen2Tokenizer "
                             f"and GPT2Tokenizer are known (their pre-tokenizer patterns live in transformers' code)")
        with open(os.path.join(path, "vocab.json"), encoding="utf-8") as f:
            vocab = json.load(f)
        with open(os.path.join(path, "merges.txt"), encoding="utf-8") as f:
            merges = [line.split(" ") for line in f.read().split("\n") if line and not line.startswith("#version")]
        added = [{"id": int(i), **a} for i, a in (cfg.get("added_tokens_decoder") or {}).items()]
        qwen = cls == "Qwen2Tokenizer"  # Qwen2Tokenizer also NFC-normalizes
        return vocab, merges, added, QWEN2_PATTERN if qwen else GPT2_PATTERN, qwen, False

    @staticmethod
    def _alternation(tokens):
        if not tokens:
            return None
        return re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)))

    @staticmethod
    def _template_text(cfg):
        t = cfg.get("chat_template") or ""
        if isinstance(t, list):  # [{"name": "default", "template": ...}, ...]
            t = next((x["template"] for x in t if x.get("name") == "default"), "")
        return t

    def _template_kind(self, cfg):
        t = self._template_text(cfg)
        jinja = os.path.join(self.path, "chat_template.jinja")  # transformers 5 writes the template here
        if not t and os.path.isfile(jinja):
            with open(jinja, encoding="utf-8") as f:
                t = cfg["chat_template"] = f.read()
        need = None
        if "<|im_start|>" in t:
            kind, need = "chatml", ("<|im_start|>", "<|im_end|>")
        elif "<|start_header_id|>" in t:
            kind, need = "llama3", ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
        else:
            return None
        missing = [x for x in need if x not in self.added]
        if missing:
            raise ValueError(f"{self.path}: the chat template uses {missing}, which are not added tokens")
        return kind

    # -------------------------------------------------------------------- encode / decode

    def _bpe(self, word):
        """Token ids of one pre-token (byte-level characters): apply the lowest-ranked merge, everywhere in
        the word left to right, until none applies."""
        if word in self.cache:
            return self.cache[word]
        if self.ignore_merges and word in self.vocab:
            return [self.vocab[word]]
        parts = list(word)
        while len(parts) > 1:
            rank, i = min((self.ranks.get(pair, float("inf")), i) for i, pair in enumerate(zip(parts, parts[1:])))
            if rank == float("inf"):
                break
            a, b, merged, j = parts[i], parts[i + 1], [], 0
            while j < len(parts):
                if j + 1 < len(parts) and parts[j] == a and parts[j + 1] == b:
                    merged.append(a + b)
                    j += 2
                else:
                    merged.append(parts[j])
                    j += 1
            parts = merged
        ids = [self.vocab[p] for p in parts if p in self.vocab]  # HF drops what the vocabulary lacks (no unk)
        if len(self.cache) > 200_000:
            self.cache.clear()
        self.cache[word] = ids
        return ids

    @staticmethod
    def _split(text, added):
        """text -> [(piece, None) or (None, added token)], cut at added-token matches."""
        if added is None:
            return [(text, None)]
        out, last = [], 0
        for m in added.finditer(text):
            if m.start() > last:
                out.append((text[last:m.start()], None))
            out.append((None, m.group()))
            last = m.end()
        if last < len(text):
            out.append((text[last:], None))
        return out

    def encode(self, text):
        """Token ids of text, as HF's tokenizer(text, add_special_tokens=False): added-token text (e.g. a chat
        template's <|im_start|>) becomes that token."""
        ids = []
        for raw, tok in self._split(text, self.raw_added):
            if tok is not None:
                ids.append(self.added[tok])
                continue
            for piece, tok in self._split(unicodedata.normalize("NFC", raw) if self.nfc else raw, self.norm_added):
                if tok is not None:
                    ids.append(self.added[tok])
                    continue
                last = 0
                for m in self.pattern.finditer(piece):  # the "Isolated" split: matches and gaps are pre-tokens
                    for pre in (piece[last:m.start()], m.group()):
                        if pre:
                            ids += self._bpe("".join(self.byte_enc[b] for b in pre.encode("utf-8")))
                    last = m.end()
                if piece[last:]:
                    ids += self._bpe("".join(self.byte_enc[b] for b in piece[last:].encode("utf-8")))
        return ids

    def decode(self, ids, skip_special=True):
        out = bytearray()
        for i in ids:
            i = int(i)
            t = self.id_to_token.get(i)
            if t is None or (skip_special and i in self.special_ids):
                continue
            b = [self.byte_dec.get(c) for c in t]
            out += bytes(b) if None not in b else t.encode("utf-8")
        return out.decode("utf-8", errors="replace")

    # -------------------------------------------------------------------- chat format

    def chat_prompt(self, user, system=None):
        """Text of a conversation's first user turn, ending where the assistant's reply begins."""
        system = self.default_system if system is None else system
        if self.template == "chatml":
            head = f"<|im_start|>system\n{system}<|im_end|>\n" if system is not None else ""
            return head + f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
        if self.template == "llama3":  # the template strips every message
            head = f"<|start_header_id|>system<|end_header_id|>\n\n{system.strip()}<|eot_id|>" if system else ""
            return self.bos + head + self.chat_followup(user)
        return (f"{system}\n\n" if system else "") + user

    def chat_followup(self, user):
        """Text after an assistant turn's end token, through the next user turn, up to the next reply."""
        if self.template == "chatml":
            return f"\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
        if self.template == "llama3":
            return (f"<|start_header_id|>user<|end_header_id|>\n\n{user.strip()}<|eot_id|>"
                    f"<|start_header_id|>assistant<|end_header_id|>\n\n")
        return f"\n\n{user}\n\n"

    def describe(self):
        return {"kind": "hf", "path": self.path}
