"""A byte-level tokenizer: token ``b`` (0–255) is the byte ``b``; three special tokens follow.

Byte-level vocabularies (GPT-2's byte fallback, ByT5) need no training and no download,
which is all the default random-weight model needs.  The one subtlety a server meets is
streaming: a UTF-8 character may span several tokens, so :class:`IncrementalDecoder`
holds back an incomplete tail instead of emitting replacement characters.
"""
from __future__ import annotations

BOS, EOS, PAD = 256, 257, 258


class ByteTokenizer:
    bos_token_id = BOS
    eos_token_id = EOS
    pad_token_id = PAD
    vocab_size = 259

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        ids = list(text.encode("utf-8"))
        return [BOS] + ids if add_bos else ids

    def decode(self, ids) -> str:
        return bytes(int(t) for t in ids if 0 <= int(t) < 256).decode("utf-8", errors="replace")

    def apply_chat_template(self, messages: list[dict]) -> list[int]:
        """``<|role|>\\ncontent\\n`` per message, then the assistant's header (a plain-text template)."""
        text = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages) + "<|assistant|>\n"
        return self.encode(text)


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
