r"""
tokenizer.py (optional reading): tokenizers with one interface: encode(text) -> ids, decode(ids) -> str, eos_id,
pad_id, vocab_size, describe() (stored in checkpoints; from_description(d) rebuilds the tokenizer).
  - CharTokenizer(alphabet): one id per character (toy tasks), after <pad> (0) and <eot> (1, end of turn).
  - GPT2Tokenizer(): tiktoken's "gpt2"; <|endoftext|> is end of turn and padding (masked by position, not id).
  - HFTokenizer(dir): a checkpoint's own tokenizer.json run by the `tokenizers` library, the one transformers runs,
    so it is exact by construction for any model it holds (byte-level BPE, SentencePiece-style BPE with byte
    fallback, Unigram, ...): encode(text) is tokenizer(text, add_special_tokens=False) (inside a chat: encode's
    docstring). Chat prompts are rendered from the checkpoint's own chat template with jinja2 as transformers'
    apply_chat_template does (a sandboxed environment, trim_blocks and lstrip_blocks, the special tokens as
    variables), compiled once per tokenizer.
    The two-turn layout [user x, assistant y1, user p, assistant y2] is cut from one rendering of the
    conversation with a marker in place of y1: chat_prompt(x) is the text before it (it must equal the rendering
    of [user x] with the generation prompt), the end-of-turn token is the special token right after it (eos_id),
    and chat_followup(p) is the text after that token. A template that does not render this way is refused with
    the reason; a checkpoint without a template gets plain text and its eos_token. pad_id: pad_token, else eos_id.
    Departure: Llama-3's template trims messages; the sampler keeps an attempt as sampled (the tokens the model
    goes on to condition on), so an attempt with whitespace at its ends differs from the re-rendered chat.
A reader may skip this file: it is the glue between text and ids; score.py sees only the interface above.
Try it:  python -c "from tokenizer import CharTokenizer as C; t = C('0123456789+-='); print(t.encode('12+3='))"
"""
import json
import os
from datetime import datetime


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


def _read(*parts, parse=str):  # a file's text (parsed), or None when there is none
    if os.path.isfile(os.path.join(*parts)):
        with open(os.path.join(*parts), encoding="utf-8") as f:
            return parse(f.read())


def chat_template(source):
    """A chat template compiled as transformers' apply_chat_template compiles it (a sandboxed jinja2 environment,
    trim_blocks and lstrip_blocks, its tojson, raise_exception and strftime_now); once per tokenizer, not per prompt."""
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def fail(message):
        raise jinja2.exceptions.TemplateError(message)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    env.globals.update(raise_exception=fail, strftime_now=lambda f: datetime.now().strftime(f))
    return env.from_string(source)


class HFTokenizer:
    MARK = "\x00y1\x00"  # stands for the first attempt while the conversation is rendered

    def __init__(self, path):
        self.path = os.path.abspath(path)
        if not os.path.isfile(os.path.join(path, "tokenizer.json")):
            raise FileNotFoundError(f"{path} has no tokenizer.json; write one with transformers: AutoTokenizer."
                                    f"from_pretrained(DIR).save_pretrained(DIR) (it converts vocab.json + merges.txt)")
        from tokenizers import Tokenizer
        self.tk = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
        cfg = _read(path, "tokenizer_config.json", parse=json.loads) or {}
        t = (cfg.get("chat_template") or _read(path, "chat_template.jinja")  # transformers 5 writes its own file
             or (_read(path, "chat_template.json", parse=json.loads) or {}).get("chat_template"))
        self.template = next((x["template"] for x in t if x.get("name") == "default"), None) if isinstance(
            t, list) else t
        # the special tokens a template may use as variables (bos_token, eos_token, ...), as strings
        self.tokens = {k: v.get("content") if isinstance(v, dict) else v for k, v in cfg.items()
                       if k.endswith("_token") and isinstance(v, (str, dict))}
        self.jinja = chat_template(self.template) if self.template else None
        self.vocab_size = self.tk.get_vocab_size(with_added_tokens=True)
        self.eos_id = self.tk.token_to_id(self.tokens.get("eos_token") or "")
        if self.template:
            self.eos_id, self.end = self._layout()
        if self.eos_id is None:
            raise ValueError(f"{path}: no end-of-turn token: no chat template and eos_token "
                             f"{self.tokens.get('eos_token')!r} is not in the vocabulary")
        self.pad_id = self.tk.token_to_id(self.tokens.get("pad_token") or "")
        self.pad_id = self.eos_id if self.pad_id is None else self.pad_id

    def _turns(self, user, x="Problem?"):
        """The rendering of [user x, assistant MARK, user `user`] with the generation prompt, cut at MARK."""
        turns = [{"role": "user", "content": x}, {"role": "assistant", "content": self.MARK},
                 {"role": "user", "content": user}]
        head, _, tail = self.render(turns).partition(self.MARK)
        return head, tail

    def _layout(self):
        """The end-of-turn id (the special token right after y1) and its text, checked on one rendering."""
        head, tail = self._turns("Instruction.")
        ids = self.tk.encode(tail, add_special_tokens=False).ids
        end = self.tk.id_to_token(ids[0]) if ids else None
        special = {i for i, a in self.tk.get_added_tokens_decoder().items() if a.special}
        problems = [why for why, bad in [
            ("the first attempt is not rendered verbatim (the template edits assistant messages)", not tail),
            ("the text before the first attempt is not the rendering of [user x] with the generation prompt",
             head != self.chat_prompt("Problem?")),
            ("no special token ends the assistant turn",
             ids == [] or ids[0] not in special or not tail.startswith(end)),
            ("the follow-up turn does not hold the instruction", "Instruction." not in tail)] if bad]
        if problems:
            raise ValueError(f"{self.path}: its chat template cannot give the two-turn layout: {problems[0]}")
        return ids[0], end

    def encode(self, text):
        """Token ids of text as HF's tokenizer(text, add_special_tokens=False): special-token text is its token.
        With a chat template, text is encoded as it stands inside the conversation, after a special token: a
        SentencePiece-style tokenizer prepends "▁" to the first word of its input, which no text there is."""
        if not self.template:
            return self.tk.encode(text, add_special_tokens=False).ids
        return self.tk.encode(self.end + text, add_special_tokens=False).ids[1:]

    def decode(self, ids, skip_special=True):
        """Text of ids (special tokens dropped unless skip_special=False), as HF's decode."""
        return self.tk.decode([int(i) for i in ids], skip_special_tokens=skip_special)

    def chat_prompt(self, user):
        """The text of a first user turn up to the reply: the chat template's, or the plain text without one."""
        if not self.template:
            return user
        return self.render([{"role": "user", "content": user}])

    def render(self, messages):
        """The template's text for messages with the generation prompt, as apply_chat_template(tokenize=False)."""
        return self.jinja.render(messages=messages, add_generation_prompt=True, tools=None, documents=None,
                                 **self.tokens)

    def chat_followup(self, user):
        """The text after an assistant turn's end-of-turn token, through the next user turn, up to the reply."""
        return self._turns(user)[1][len(self.end):] if self.template else f"\n\n{user}\n\n"

    def describe(self):
        return {"kind": "hf", "path": self.path}
