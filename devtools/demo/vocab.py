"""A word-level CLIP tokenizer for the demo world: every domain word is one token, anything else is spelled.

It is an ordinary CLIP BPE tokenizer (``vocab.json`` + ``merges.txt``, loaded by ``CLIPTokenizer``): the
vocabulary holds CLIP's 256 byte symbols (alone and word-final), so every text tokenizes, and merges
learnt by byte-pair encoding over the domain words alone, so that each of those words becomes a single
token. Torch-free; ``tokenizer()`` needs transformers.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from devtools.demo.captions import WORDS

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

__all__ = ["BOS", "EOS", "MAX_LENGTH", "bpe_merges", "tokenizer", "vocabulary", "write_tokenizer_files"]

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 40  # tokens per prompt, start and end included; the longest caption takes 31
_END = "</w>"


def bpe_merges(words: Iterable[str]) -> list[tuple[str, str]]:
    """Byte-pair merges, most frequent pair first (ties by the pair's text), until every word is one symbol.

    CLIP's BPE applies merges by rank, which replays this sequence exactly on each of ``words``."""
    pieces = {word: [*word[:-1], word[-1] + _END] for word in sorted(set(words)) if word}
    merges: list[tuple[str, str]] = []
    while True:
        counts: Counter[tuple[str, str]] = Counter()
        for symbols in pieces.values():
            counts.update(itertools.pairwise(symbols))
        if not counts:
            return merges
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        for word, symbols in pieces.items():
            pieces[word] = _merge(symbols, best)


def _merge(symbols: list[str], pair: tuple[str, str]) -> list[str]:
    merged, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            merged.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            merged.append(symbols[i])
            i += 1
    return merged


def vocabulary(merges: list[tuple[str, str]]) -> dict[str, int]:
    """CLIP's byte symbols, their word-final forms, every merge result, then the start and end tokens
    (with no merges: the byte-level vocabulary of ``devtools.tiny_pipelines``'s test pipelines)."""
    symbols = list(_bytes_to_unicode().values())
    tokens = [*symbols, *(s + _END for s in symbols)]
    seen = set(tokens)
    for a, b in merges:
        if a + b not in seen:
            seen.add(a + b)
            tokens.append(a + b)
    tokens += [BOS, EOS]
    return {token: index for index, token in enumerate(tokens)}


def write_tokenizer_files(folder: str | Path) -> tuple[Path, Path]:
    """``vocab.json`` and ``merges.txt`` for the domain words in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    merges = bpe_merges(WORDS)
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    vocab_path.write_text(json.dumps(vocabulary(merges), ensure_ascii=False), encoding="utf-8")
    merges_path.write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    return vocab_path, merges_path


def tokenizer() -> CLIPTokenizer:
    """The demo tokenizer, built from the domain words (the exported model carries the same files)."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as scratch:
        vocab_path, merges_path = write_tokenizer_files(scratch)
        return CLIPTokenizer(
            str(vocab_path),
            str(merges_path),
            model_max_length=MAX_LENGTH,
            bos_token=BOS,
            eos_token=EOS,
            unk_token=EOS,
            pad_token=EOS,
        )


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte-to-character table."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {byte: chr(code) for byte, code in zip(printable, codes, strict=True)}
