"""The README's examples work as pasted: every command line parses, every token shape is real."""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path

import click
import pytest

from pixel_server.cli import main
from pixel_server.signing import DEFLATED, PLAIN, read_unverified

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
SHELL_BLOCKS = re.findall(r"```(?:sh|bash|console)\n(.*?)```", README, re.S)
ENV_ASSIGNMENT = re.compile(r"[A-Z_][A-Z0-9_]*=")
SHELL_OPERATORS = frozenset((">", ">>", "<", "|", "&&", "||", ";", "&"))


def command_lines() -> list[list[str]]:
    """Each `pixel-server ...` invocation in a shell block, continuations joined."""
    found = []
    for block in SHELL_BLOCKS:
        pending = ""
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(pending + line, posix=True, punctuation_chars=True)
            lexer.whitespace_split, lexer.commenters = True, "#"
            try:
                words = list(lexer)
            except ValueError:  # a quoted string goes on on the next line
                pending += line + "\n"
                continue
            pending = ""
            for i, word in enumerate(words):
                if word in SHELL_OPERATORS:
                    del words[i:]  # the command ends at a redirection, pipe or list operator
                    break
            while words and ENV_ASSIGNMENT.match(words[0]):
                words.pop(0)  # PIXEL_X=... pixel-server serve
            if words and words[0] in ("pixel-server", ".venv/bin/pixel-server"):
                found.append(words[1:])
    return found


def test_the_readme_shows_commands() -> None:
    """The extraction below finds the README's examples (guards against a silent no-op)."""
    commands = {words[0] for words in command_lines() if words}
    assert {"serve", "link", "pixel", "hits", "export"} <= commands


@pytest.mark.parametrize("words", command_lines(), ids=" ".join)
def test_every_readme_command_line_parses(
    words: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each example names a real command with options and arguments it accepts."""
    name, *args = words
    monkeypatch.chdir(tmp_path)
    for option, value in itertools.pairwise(args):
        if option == "--recipients":  # an input file the example assumes exists
            (tmp_path / value).touch()
    with click.Context(main) as ctx:
        command = main.get_command(ctx, name)
        assert command is not None, f"no command {name!r}"
        sub = command.make_context(name, args, parent=ctx)  # raises on an unknown option
        sub.close()


TOKENS = re.findall(r"/(?:p|r)/(k[A-Za-z0-9_-]*\.[A-Za-z0-9_.-]+?)(?:\.gif)?(?=[\s\"`)])", README)


def test_the_readme_shows_tokens() -> None:
    """The README's pixel and link examples are extracted (guards against a silent no-op)."""
    assert len(TOKENS) >= 2


@pytest.mark.parametrize("token", TOKENS)
def test_readme_tokens_have_the_real_shape(token: str) -> None:
    """A shown token is a format-2 <key id>.<marker><payload and tag> (docs/tokens.md), and
    its payload decodes to ids."""
    if "…" in token:
        pytest.fail(f"README shows an elided token {token!r}: show a real one")
    kid, _, body = token.partition(".")
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,16}", kid)
    assert body[:1] in (PLAIN, DEFLATED)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", body[1:])
    decoded = read_unverified(token)
    assert decoded.get("cid") == "spring"
