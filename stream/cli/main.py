"""``glassbox``: the command line. Builds the app from one module per command group, registered explicitly
(a broken import fails here, loudly), and gives every command the same way to fail:

- ``glassbox: error: <one line>`` on stderr, never a traceback;
- exit code 2 for usage errors and for what the user can fix (:class:`~stream.errors.UserError`: a wrong path, a
  bad config, an unreachable broker, a missing optional dependency);
- exit code 70 for a defect, with the traceback when ``GLASSBOX_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import typer

from stream.cli.alerts import alerts_app, silence_app
from stream.cli.demo import demo_command
from stream.cli.explain import explain_command
from stream.cli.kafka import broker_command, produce_command
from stream.cli.reference import reference_app
from stream.cli.replay import replay_command
from stream.cli.worker import worker_command
from stream.errors import UserError

# typer vendors click; its exception classes are reachable through the public BadParameter.
_UsageError = typer.BadParameter.__mro__[1]
_ClickException = typer.BadParameter.__mro__[2]

USER_ERROR = 2
INTERNAL_ERROR = 70  # EX_SOFTWARE
GROUPS = ("alerts", "silence", "reference")
OWN_PACKAGES = ("stream", "detectors")


def build_app() -> typer.Typer:
    """The ``glassbox`` app with every command group."""
    app = typer.Typer(
        name="glassbox",
        help="Streaming drift monitor: Kafka predictions and labels in, explained alerts out.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
    app.command("broker")(broker_command)
    app.command("produce")(produce_command)
    app.command("worker")(worker_command)
    app.command("replay")(replay_command)
    app.command("explain")(explain_command)
    app.command("demo")(demo_command)
    app.add_typer(reference_app, name="reference")
    app.add_typer(alerts_app, name="alerts")
    app.add_typer(silence_app, name="silence")
    return app


app = build_app()


def _command(argv: list[str]) -> str:
    """The command named on the command line (``worker``, ``alerts notify``), for error messages."""
    words = []
    for arg in argv:
        if arg.startswith("-"):
            break
        words.append(arg)
    return " ".join(words[:2] if words[:1] and words[0] in GROUPS else words[:1]) or "glassbox"


def fail(message: str, code: int = USER_ERROR) -> NoReturn:
    """Print ``glassbox: error: <message>`` (one line) on stderr and exit with ``code``."""
    line = " ".join(str(message).split())
    print(f"glassbox: error: {line}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every failure becomes one line on stderr and an exit code (see the module docstring)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        rv = app(args=args, prog_name="glassbox", standalone_mode=False)
    except _UsageError as err:
        if type(err).__name__ == "NoArgsIsHelpError":  # `glassbox` or `glassbox alerts` alone: the help
            print(err.format_message())
            sys.exit(USER_ERROR)
        where = f" (see {err.ctx.command_path} --help)" if getattr(err, "ctx", None) else ""
        fail(f"{err.format_message()}{where}")
    except typer.Abort:
        fail("aborted", 130)
    except typer.Exit as err:
        sys.exit(err.exit_code)
    except _ClickException as err:
        fail(err.format_message())
    except UserError as err:
        fail(str(err))
    except KeyboardInterrupt:
        sys.exit(130)
    except ModuleNotFoundError as err:  # the light (producer SDK) install lacks what the command needs
        if (err.name or "").split(".")[0] in OWN_PACKAGES:
            _internal(err)
        fail(f"{_command(args)} needs the worker dependencies (no module {err.name!r}): "
             "pip install 'glassbox[worker]'")
    except Exception as err:  # a defect
        _internal(err)
    sys.exit(rv if isinstance(rv, int) else 0)


def _internal(err: BaseException) -> NoReturn:
    if os.environ.get("GLASSBOX_DEBUG", "") not in ("", "0"):
        raise err
    fail(f"internal error: {type(err).__name__}: {err} (GLASSBOX_DEBUG=1 shows the traceback)", INTERNAL_ERROR)
