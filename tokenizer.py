"""
tokenizer.py: the two tokenizers of the project behind one tiny interface.

  encode(text) -> list[int]     decode(ids) -> str     eos_id, pad_id, vocab_size     describe() -> dict

  - CharTokenizer: one id per character of a task alphabet (the toy tasks), plus two special tokens:
    <pad> (id 0, never sampled for real text, masked out everywhere) and <eot> (end of turn; the sampler
    stops a turn on it). Small vocabularies make the from-scratch toy models cheap.
  - GPT2Tokenizer: GPT-2's BPE through tiktoken.get_encoding("gpt2"), for Hugging Face GPT-2 checkpoints.
    GPT-2 has no padding token; <|endoftext|> (50256) serves as both end of turn and padding, which is safe
    because padding is always masked by position, never recognised by id.

`describe()` is what our checkpoints store; `from_description(d)` rebuilds the tokenizer from it.
Offline use of the GPT-2 files: TIKTOKEN_CACHE_DIR=../shared/tiktoken_cache (or any cache holding them).

Try it:  python -c "from tokenizer import CharTokenizer as C; t = C('0123456789+-='); print(t.encode('12+3='))"
"""


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
    raise ValueError(f"unknown tokenizer description {d!r}; expected kind 'char' or 'tiktoken' (gpt2)")
