"""Text that comes from a spec (or a file name, or a value a spec computes) on its way to a terminal,
a table or a diagram: control and invisible characters escaped, line ends as editors count them.

A spec is untrusted. A comment holding `ESC ] 0 ; title BEL`, a bidi override that reorders what a
line appears to say, a zero-width space inside a name: printed raw, each would let a file rewrite the
user's terminal or hide what it says. Every face (diagnostics, summary tables, DOT labels, CLI lines)
passes such text through `escape_controls`, which shows those characters as escapes (`\\x1b`,
`\\u202e`) and leaves everything else, non-ASCII letters included, as it is.
"""

from __future__ import annotations

import re
import sys
import unicodedata

# Categories never shown raw: controls (C0, DEL, C1), format characters (bidi overrides and isolates,
# zero-width joiners and spaces, the BOM, soft hyphen), line and paragraph separators, surrogates.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})

# Only printable ASCII (and the line end) needs no look at all: the fast path for almost every string.
_PLAIN = re.compile(r"[\x20-\x7e\n]*\Z")
_hidden: re.Pattern | None = None


def _hidden_pattern() -> re.Pattern:
    """A character class of every hidden character of this Python's Unicode database, built on first use
    (a scan of the planes where controls and format characters live: about 20 ms, once)."""
    global _hidden
    if _hidden is None:
        ranges: list[tuple[int, int]] = []
        for plane in (range(0, 0x20000), range(0xE0000, 0xE1000)):
            for cp in plane:
                if unicodedata.category(chr(cp)) in _HIDDEN_CATEGORIES:
                    if ranges and ranges[-1][1] == cp - 1:
                        ranges[-1] = (ranges[-1][0], cp)
                    else:
                        ranges.append((cp, cp))
        parts = "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)
        _hidden = re.compile(f"[{parts}]")
    return _hidden


def escape_char(ch: str) -> str:
    """One character as an escape: `\\t`, `\\x1b`, `\\u202e`, `\\U000e0041`."""
    named = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
    if ch in named:
        return named[ch]
    cp = ord(ch)
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def is_hidden(ch: str) -> bool:
    """Whether a character would act on a terminal or not show: a control, format or separator character."""
    return unicodedata.category(ch) in _HIDDEN_CATEGORIES


def escape_controls(text: str, keep: str = "") -> str:
    """`text` with every control, format (bidi, zero-width) and separator character shown as an escape.
    Characters in `keep` (`"\\n"` for multi-line output) stay as they are."""
    if _PLAIN.match(text):
        return text
    pattern = _hidden_pattern()
    return pattern.sub(lambda m: m.group() if m.group() in keep else escape_char(m.group()), text)


def displayed(line: str, tab: int = 4) -> tuple[str, list[int]]:
    """A source line as a terminal should show it, and where each character lands: tabs expanded to the
    next multiple of `tab`, hidden characters escaped. `starts[i]` is the display column (0-based) of
    character i, with one extra entry for the end of the line, so that a caret under columns
    `col..end_col` sits under the characters the editor shows there."""
    out: list[str] = []
    starts: list[int] = []
    width = 0
    plain = bool(_PLAIN.match(line))
    for ch in line:
        starts.append(width)
        if ch == "\t":
            shown = " " * (tab - width % tab)
        elif plain or not is_hidden(ch):
            shown = ch
        else:
            shown = escape_char(ch)
        out.append(shown)
        width += len(shown)
    starts.append(width)
    return "".join(out), starts


def normalize_newlines(text: str) -> str:
    """CRLF and lone CR line ends as LF: lines and columns are those an editor shows, whichever ends the
    file was saved with (a CR-only file is many lines, not one long comment)."""
    if "\r" not in text:
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n")


_CONTROL_NAMES = {0x00: "NULL", 0x07: "BELL", 0x08: "BACKSPACE", 0x09: "CHARACTER TABULATION",
                  0x0A: "LINE FEED", 0x0B: "LINE TABULATION", 0x0C: "FORM FEED", 0x0D: "CARRIAGE RETURN",
                  0x1B: "ESCAPE", 0x7F: "DELETE", 0x85: "NEXT LINE", 0x9B: "CONTROL SEQUENCE INTRODUCER"}


def describe_char(ch: str) -> str:
    """`U+200B ZERO WIDTH SPACE`: a character named, for one that cannot be seen or looks like another."""
    name = unicodedata.name(ch, "") or _CONTROL_NAMES.get(ord(ch), "")
    if not name and unicodedata.category(ch) == "Cc":
        name = "CONTROL CHARACTER"
    return f"U+{ord(ch):04X}" + (f" {name}" if name else "")


def is_terminal_safe(text: str) -> bool:
    """Whether `text` holds no hidden character other than line ends (what the tests assert of output)."""
    return not _hidden_pattern().search(text.replace("\n", ""))


__all__ = ["escape_controls", "escape_char", "displayed", "normalize_newlines", "describe_char", "is_hidden",
           "is_terminal_safe"]

if __name__ == "__main__":  # pragma: no cover - a quick look: python -m graphdsl.text 'a\x1bb'
    print(escape_controls(sys.argv[1].encode().decode("unicode_escape")))
