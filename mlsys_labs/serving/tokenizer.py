"""Tokenizers: the built-in byte-level one, and a checkpoint's own (``tokenizer.json``).

:class:`ByteTokenizer`: token ``b`` (0–255) is the byte ``b``; three special tokens follow.
Byte-level vocabularies (GPT-2's byte fallback, ByT5) need no training and no download,
which is all the default random-weight model needs.  :class:`HFTokenizer`: a Hugging Face
checkpoint's BPE tokenizer, its special tokens, its generation config's end tokens and its
Jinja chat template.

Both answer the same contract: ``encode(text, add_bos=True)``, ``decode(ids)``,
``bos_token_id``, ``eos_token_id``, ``stop_token_ids`` (EOS and the checkpoint's other end
tokens), ``vocab_size``, ``apply_chat_template(messages)`` and ``incremental_decoder()``.

The one subtlety a server meets is streaming: a UTF-8 character may span several tokens,
so the incremental decoders hold back an incomplete tail instead of emitting replacement
characters — :class:`IncrementalDecoder` byte by byte, :class:`PrefixOffsetDecoder` by
decoding a window of tokens and emitting only its stable suffix (the method of vLLM's
``detokenize_incrementally`` and TGI's ``decode_token``).
"""
from __future__ import annotations

import json
from pathlib import Path

BOS, EOS, PAD = 256, 257, 258


class ByteTokenizer:
    bos_token_id = BOS
    eos_token_id = EOS
    pad_token_id = PAD
    vocab_size = 259
    stop_token_ids = frozenset({EOS})

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        ids = list(text.encode("utf-8"))
        return [BOS] + ids if add_bos else ids

    def decode(self, ids) -> str:
        return bytes(int(t) for t in ids if 0 <= int(t) < 256).decode("utf-8", errors="replace")

    def apply_chat_template(self, messages: list[dict]) -> list[int]:
        """``<|role|>\\ncontent\\n`` per message, then the assistant's header (a plain-text template)."""
        text = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages) + "<|assistant|>\n"
        return self.encode(text)

    def incremental_decoder(self) -> "IncrementalDecoder":
        return IncrementalDecoder()


def _complete_prefix_len(buf: bytes) -> int:
    """Length of the longest prefix of ``buf`` that does not end inside a UTF-8 character.

    UTF-8 (RFC 3629 §3): a lead byte ``0xxxxxxx`` stands alone; ``110xxxxx``, ``1110xxxx``,
    ``11110xxx`` start 2-, 3- and 4-byte characters; ``10xxxxxx`` continues one."""
    # BEGIN SOLUTION [step 6] hint: look back at most 4 bytes for the last lead byte; if its character is not complete, stop before it
    n = len(buf)
    for back in range(1, min(4, n) + 1):
        b = buf[n - back]
        if b < 0x80:                      # ASCII: everything up to here is complete
            return n
        if b >= 0xC0:                     # a lead byte: is its character complete?
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            return n if back >= need else n - back
    return n                              # stray continuation bytes: let 'replace' handle them
    # END SOLUTION


class IncrementalDecoder:
    """Turns a stream of token ids into text deltas that never split a UTF-8 character."""

    def __init__(self):
        self.buf = b""
        self.emitted = 0      # bytes of buf already turned into text

    def add(self, token: int) -> str:
        if 0 <= token < 256:
            self.buf += bytes([token])
        end = _complete_prefix_len(self.buf)
        if end <= self.emitted:
            return ""
        out = self.buf[self.emitted:end].decode("utf-8", errors="replace")
        self.emitted = end
        return out

    def flush(self) -> str:
        out = self.buf[self.emitted:].decode("utf-8", errors="replace")
        self.emitted = len(self.buf)
        return out


class PrefixOffsetDecoder:
    """Incremental detokenisation for any tokenizer: decode ``ids[prefix:]`` and emit the part
    past ``ids[prefix:read]``'s text, unless it ends in U+FFFD (a character still incomplete).

    Decoding a short window rather than each token alone keeps what a token means in context
    (byte-level BPE pieces of one character, a SentencePiece word's leading space)."""

    def __init__(self, decode):
        self._decode = decode
        self.ids: list[int] = []
        self.prefix_offset = 0    # start of the window decoded for context
        self.read_offset = 0      # tokens whose text has been emitted

    def add(self, token: int) -> str:
        self.ids.append(int(token))
        prefix_text = self._decode(self.ids[self.prefix_offset:self.read_offset])
        new_text = self._decode(self.ids[self.prefix_offset:])
        if len(new_text) <= len(prefix_text) or new_text.endswith("\ufffd"):
            return ""
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        return new_text[len(prefix_text):]

    def flush(self) -> str:
        prefix_text = self._decode(self.ids[self.prefix_offset:self.read_offset])
        new_text = self._decode(self.ids[self.prefix_offset:])
        self.prefix_offset = self.read_offset = len(self.ids)
        return new_text[len(prefix_text):]


class HFTokenizer:
    """A local Hugging Face checkpoint's tokenizer (``tokenizer.json`` + ``tokenizer_config.json``),
    loaded through transformers' fast tokenizer so ids, text and the chat template are exactly
    what ``transformers`` produces for the same checkpoint."""

    def __init__(self, path: str | Path):
        from transformers import AutoTokenizer

        path = Path(path)
        self.tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.bos_token_id = self.tok.bos_token_id
        self.eos_token_id = self.tok.eos_token_id
        self.pad_token_id = self.tok.pad_token_id
        self.vocab_size = len(self.tok)
        self.stop_token_ids = frozenset(_generation_eos_ids(path) | {self.eos_token_id} - {None})
        self.chat_template: str | None = self.tok.chat_template or None

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        """``add_bos``: add the special tokens the checkpoint's post-processor adds (BOS for Llama)."""
        return list(self.tok.encode(text, add_special_tokens=add_bos))

    def decode(self, ids) -> str:
        return self.tok.decode([int(t) for t in ids], skip_special_tokens=True)

    def apply_chat_template(self, messages: list[dict]) -> list[int]:
        """The checkpoint's Jinja template with the assistant's header appended; the rendered text
        carries its own BOS, so it is encoded without adding special tokens (as vLLM does)."""
        if self.chat_template is None:
            raise ValueError("this checkpoint has no chat template (tokenizer_config.json 'chat_template')")
        text = self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.encode(text, add_bos=False)

    def incremental_decoder(self) -> PrefixOffsetDecoder:
        return PrefixOffsetDecoder(self.decode)


def _generation_eos_ids(path: Path) -> set[int]:
    """The end tokens ``generation_config.json`` lists (Llama 3 ends turns with ``<|eot_id|>``)."""
    f = path / "generation_config.json"
    if not f.exists():
        return set()
    eos = json.loads(f.read_text()).get("eos_token_id")
    return set() if eos is None else {eos} if isinstance(eos, int) else set(eos)


def load_tokenizer(path: str | Path | None):
    """A checkpoint's own tokenizer when it has ``tokenizer.json``, else the byte tokenizer."""
    if path is not None and (Path(path) / "tokenizer.json").exists():
        return HFTokenizer(path)
    return ByteTokenizer()
