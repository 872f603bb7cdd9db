"""Text for the server-side search index (spec: "Server Side Search"), made the same way for
both databases so they find the same events.

Words are NFKC-normalised and case-folded. Scripts written without spaces (Chinese,
Japanese, Korean) are cut into single characters and overlapping pairs (bigrams, what
MySQL's ngram parser does); a query needs each pair of its own text, so "你好世界" finds
"我说你好世界" but not "世界你好". Each token is stored as ``x`` + the hex of its UTF-8 bytes:
then every token is plain ASCII the database's own tokenizer keeps whole, none is shorter
than InnoDB's minimum token size (3) or falls in its stopword list, and a hex prefix is a
prefix of the word, so prefix queries work on both SQLite FTS5 and MariaDB FULLTEXT.
"""

from __future__ import annotations

import re
import unicodedata

import attrs

_WORD = re.compile(r"\w+")
# InnoDB ignores tokens longer than 84 characters: "x" + hex of at most 40 bytes.
_MAX_TOKEN_BYTES = 40
_NO_SPACE_SCRIPTS = (
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x2FA1F),  # CJK extensions B and later
)


def _unspaced(ch: str) -> bool:
    code = ord(ch)
    return any(lo <= code <= hi for lo, hi in _NO_SPACE_SCRIPTS)


def _runs(word: str) -> list[tuple[str, bool]]:
    """A word split into runs of spaced and unspaced script: ("abc", False), ("中文", True)."""
    runs: list[tuple[str, bool]] = []
    for ch in word:
        kind = _unspaced(ch)
        if runs and runs[-1][1] == kind:
            runs[-1] = (runs[-1][0] + ch, kind)
        else:
            runs.append((ch, kind))
    return runs


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def encode_token(token: str) -> str:
    return "x" + token.encode("utf-8")[:_MAX_TOKEN_BYTES].hex()


def index_tokens(text: str) -> str:
    """What the index stores for a text: its tokens, encoded, space-separated."""
    out: list[str] = []
    for match in _WORD.finditer(_normalise(text)):
        for run, unspaced in _runs(match.group()):
            if not unspaced:
                out.append(run)
                continue
            out.extend(run)  # single characters: a one-character query finds them
            out.extend(run[i:i + 2] for i in range(len(run) - 1))
    return " ".join(encode_token(t) for t in out)


@attrs.frozen
class SearchQuery:
    """A search term as index tokens: every one must be found; `prefix` ones match any
    word they begin (as Synapse matches each word of the term as a prefix)."""

    tokens: tuple[tuple[str, bool], ...]  # (encoded token, prefix)
    words: tuple[str, ...]  # the normalised words, for the response's highlights

    @property
    def empty(self) -> bool:
        return not self.tokens

    def fts5(self) -> str:
        """SQLite FTS5 MATCH syntax: tokens side by side are all required."""
        return " ".join(t + ("*" if prefix else "") for t, prefix in self.tokens)

    def innodb_boolean(self) -> str:
        """MariaDB MATCH ... AGAINST (... IN BOOLEAN MODE): '+' requires each token."""
        return " ".join("+" + t + ("*" if prefix else "") for t, prefix in self.tokens)


def parse_query(term: str) -> SearchQuery:
    tokens: dict[tuple[str, bool], None] = {}
    words: dict[str, None] = {}
    for match in _WORD.finditer(_normalise(term)):
        words[match.group()] = None
        for run, unspaced in _runs(match.group()):
            if not unspaced:
                tokens[(encode_token(run), len(run.encode("utf-8")) < _MAX_TOKEN_BYTES)] = None
            elif len(run) == 1:
                tokens[(encode_token(run), False)] = None
            else:
                for i in range(len(run) - 1):
                    tokens[(encode_token(run[i:i + 2]), False)] = None
    return SearchQuery(tuple(tokens), tuple(words))
