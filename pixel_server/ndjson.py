"""NDJSON lines that every reader splits in the same place (imports nothing heavy: the CLI
uses it for recipients' links without loading the hit log)."""

from __future__ import annotations

# JSON allows these raw in strings, but JavaScript before ES2019 and str.splitlines() treat
# them as line ends, which would split an NDJSON record
NDJSON_ESCAPES = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}


def ndjson_line(encoded: str) -> str:
    """``encoded`` (one ``json.dumps`` result) with the line-ending characters escaped, plus
    a newline. They can only occur inside JSON strings, where the escape means the same."""
    for char, escaped in NDJSON_ESCAPES.items():
        encoded = encoded.replace(char, escaped)
    return encoded + "\n"
