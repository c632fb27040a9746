"""The click group of ``pixel-server``: every command's configuration and usage problems
become one ``Error:`` line on stderr and exit status 2, never a traceback or a usage block."""

from __future__ import annotations

from typing import Any

import click
from click.core import ParameterSource

from .config import ConfigError
from .outage import StoreUnavailable


def flag_given(setting: str | None) -> str | None:
    """The flag of this command that set the variable ``setting``, if one did."""
    ctx = click.get_current_context()
    for param in ctx.command.params:
        given = param.name and ctx.get_parameter_source(param.name) == ParameterSource.COMMANDLINE
        if param.envvar == setting and given:
            return param.opts[0]
    return None


class OneLineError(click.ClickException):
    """A problem with the command's settings or options: ``Error: <one line>`` on stderr and
    exit status 2, whichever command it is."""

    exit_code = 2

    def format_message(self) -> str:
        return " ".join(self.message.splitlines())


class StoreDown(click.ClickException):
    """The store cannot be reached now: one line, exit status 1 (not a usage problem)."""

    exit_code = 1

    def format_message(self) -> str:
        return " ".join(self.message.splitlines())


class Failed(click.ClickException):
    """The command ran and could not do what it was asked: one line, exit status 1."""

    exit_code = 1

    def format_message(self) -> str:
        return " ".join(self.message.splitlines())


class PixelGroup(click.Group):
    """Turns every configuration and usage problem of every command into one line, exit 2.

    ConfigError comes from settings (config.py), from what the settings build (keys, the
    redirect policy, the server) and from serve's preflight. An OSError that names a file is
    a path the configuration or an option points at (a key file, an output file); others are
    not ours to explain and keep their traceback. Click's own usage errors (a bad option value,
    an unknown option) lose the usage block and keep a hint, so they are one line too.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise OneLineError(str(exc)) from None
        except StoreUnavailable as exc:
            raise StoreDown(f"the store is unavailable: {exc}; try again later") from None
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            raise OneLineError(exc.format_message() + hint) from None
        except OSError as exc:
            if exc.filename is None or isinstance(exc, BrokenPipeError):
                raise
            raise OneLineError(f"{exc.filename}: {exc.strerror or exc}") from None
