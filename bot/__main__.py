"""`python -m bot` runs the bot; `python -m bot check` checks the configuration and machine;
`python -m bot demo` shows the bot at work against a local fake Discord (no token, no GPU).

First run with no configuration file: an example is written and the bot explains the one thing
to do (set DISCORD_TOKEN). Every problem ends in a sentence, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import sys
from pathlib import Path

from bot.config import (
    EXAMPLE_CONFIG,
    ConfigError,
    Settings,
    apply_discord_endpoints,
    load_settings,
)
from generation.config_file import config_path_from_env
from generation.shell import python_command


def token_help(config_args: str = "") -> str:
    """What to do about the token, with commands that work as printed in this environment
    (`config_args`: the `--config FILE` the person gave, repeated in each command)."""
    return (
        "Set DISCORD_TOKEN in the environment to your bot's token "
        "(Discord Developer Portal → your application → Bot → Reset Token), for example:\n"
        "    export DISCORD_TOKEN='...'\n"
        f"then {next_commands(config_args)}."
    )


def next_commands(config_args: str = "") -> str:
    """The steps after the configuration: check, download the weights (once), run."""
    return (
        f"run `{python_command('-m bot check' + config_args)}`, "
        f"`{python_command('-m generation.download' + config_args)}` and "
        f"`{python_command('-m bot' + config_args)}`"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__.splitlines()[0])
    parser.add_argument(
        "command", nargs="?", default="run", choices=["run", "check", "demo"], help="default: run"
    )
    parser.add_argument(
        "--config", type=Path, help="configuration file (default: $ATELIER_CONFIG or atelier.toml)"
    )
    args = parser.parse_args(argv)
    if args.command == "demo":
        from bot.demo import main as demo

        return demo()
    path = args.config or config_path_from_env()
    config_args = f" --config {shlex.quote(str(args.config))}" if args.config else ""
    out = sys.stdout if args.command == "check" else sys.stderr  # check: one stream, in order

    if not path.exists() and not path.is_symlink():
        return first_run(path, config_args)
    try:
        settings = load_settings(path)
    except ConfigError as error:
        print(f"{path} has problems:\n{error}", file=out)
        return 1
    if args.command == "check":
        from bot.check import run_checks

        return asyncio.run(run_checks(settings, config_args))
    if not settings.token:
        print(f"No token. {token_help(config_args)}", file=sys.stderr)
        return 1
    return run(settings)


def first_run(path: Path, config_args: str = "") -> int:
    """Write the commented example configuration and say what is left to do."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as file:  # "x": never through a dangling link
            file.write(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    except OSError as error:
        print(
            f"There is no configuration at {path}, and I could not write an example there "
            f"({error.strerror or error}). Point ATELIER_CONFIG (or --config) at a file in a "
            "folder you can write to, or create that folder.",
            file=sys.stderr,
        )
        return 1
    left = (
        f"DISCORD_TOKEN is set, so {next_commands(config_args)}."
        if os.environ.get("DISCORD_TOKEN", "").strip()
        else f"The one thing left to do:\n{token_help(config_args)}"
    )
    print(
        f"Welcome to Atelier! There was no configuration, so I wrote an example to {path}.\n"
        f"It works as it is on one GPU. {left}",
        file=sys.stderr,
    )
    return 2


def run(settings: Settings) -> int:
    """Run the bot until it is stopped (SIGINT/SIGTERM); 0 on a clean stop."""
    import aiohttp
    import discord

    from bot.hardening import make_undumpable
    from bot.observability import configure_logging

    make_undumpable()  # before anything else runs: other processes of the user see no token
    observability = settings.observability
    configure_logging(
        level=observability.log_level,
        style=observability.log_format,
        secrets=[settings.token.reveal()],
    )
    apply_discord_endpoints(settings)
    try:
        asyncio.run(_serve(settings))
    except discord.LoginFailure:
        print(f"Discord refused the token in DISCORD_TOKEN. {token_help()}", file=sys.stderr)
        return 1
    except discord.PrivilegedIntentsRequired:
        print("Discord refused a privileged intent; Atelier needs none.", file=sys.stderr)
        return 1
    except (aiohttp.ClientConnectionError, TimeoutError) as error:
        print(
            f"Could not reach Discord ({error}). Check this machine's network connection "
            "(and a proxy or firewall), then start the bot again.",
            file=sys.stderr,
        )
        return 1
    return 0


async def _serve(settings: Settings) -> None:
    """Run until Discord ends the session or SIGINT/SIGTERM asks to stop; then close cleanly."""
    from bot.app import AtelierBot
    from bot.observability import Metrics
    from bot.observability.plugin import Observability

    metrics = Metrics()
    plugin = Observability(settings.observability, metrics)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    bot = AtelierBot(settings, plugins=[plugin], pool_observer=metrics)
    async with bot:  # leaving the block closes the bot
        running = asyncio.create_task(bot.start(settings.token.reveal()), name="bot")
        stopping = asyncio.create_task(stop.wait(), name="stop")
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if running.done():
            running.result()  # LoginFailure and the like go to `run`


if __name__ == "__main__":
    sys.exit(main())
