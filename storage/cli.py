"""`python -m storage --db PATH COMMAND`: the owner's tools for Atelier's database.

Exit codes: 0 success, 1 `check` found problems, 2 bad arguments or an unusable database
(which is then left unchanged).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from storage.database import Database
from storage.errors import StorageError
from storage.maintenance import DAY_S
from storage.records import Usage
from storage.schema import latest_version

EXIT_PROBLEMS = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.db is None:
        parser.error("give the database with --db PATH (or set ATELIER_DB)")
    if args.db.is_dir():
        return _fail(f"{args.db} is a folder; give the database file (atelier.sqlite3) in it.")
    if args.command != "migrate" and args.db.is_file() and args.db.stat().st_size == 0:
        return _fail(  # opening it would make it a database: only `migrate` creates one
            f"{args.db} is an empty file, not an Atelier database; nothing was changed. "
            "`migrate` would make it a new, empty database."
        )
    if args.command != "migrate" and not args.db.is_file():
        return _fail(
            f"There is no database at {args.db}. The bot keeps it in its data_dir as "
            "atelier.sqlite3 (data/atelier.sqlite3 beside atelier.toml by default); "
            "`migrate` would create a new, empty one."
        )
    try:
        return asyncio.run(_run(args))
    except StorageError as error:
        return _fail(str(error))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m storage", description=__doc__)
    parser.add_argument(
        "--db", type=Path, default=_env_path("ATELIER_DB"), help="the SQLite file (ATELIER_DB)"
    )
    parser.add_argument(
        "--images", type=Path, default=None, help="the image folder (default: images/ beside it)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("migrate", help="create the database or bring its schema up to date")
    stats = commands.add_parser("stats", help="usage per user and per model")
    stats.add_argument("--days", type=_positive_float, default=30.0, help="period (default 30)")
    backup = commands.add_parser("backup", help="online backup of the database to OUT")
    backup.add_argument("out", type=Path, metavar="OUT")
    prune = commands.add_parser("prune", help="delete image files older than DAYS (rows stay)")
    prune.add_argument("--older-than", type=_positive_float, required=True, metavar="DAYS")
    export = commands.add_parser("export-user", help="export a user's data to the folder OUT")
    export.add_argument("user_id", type=_user_id, metavar="ID")
    export.add_argument("out", type=Path, metavar="OUT")
    delete = commands.add_parser("delete-user", help="erase everything about a user")
    delete.add_argument("user_id", type=_user_id, metavar="ID")
    check = commands.add_parser("check", help="integrity check; image files missing or orphaned")
    check.add_argument("--deep", action="store_true", help="also re-hash every image file")
    return parser


async def _run(args: argparse.Namespace) -> int:
    async with await Database.open(args.db, images_dir=args.images) as db:
        match args.command:
            case "migrate":
                print(f"{args.db}: schema version {latest_version()}, up to date.")
            case "stats":
                until = time.time()
                stats = await db.stats(until - args.days * DAY_S, until)
                print(f"Usage over the last {args.days:g} days")
                _print_usage("user", stats.by_user)
                _print_usage("model", stats.by_model)
            case "backup":
                await db.backup(args.out)
                print(f"Backed up {args.db} to {args.out}. Copy {db.images_dir} as well.")
            case "prune":
                report = await db.prune(args.older_than)
                print(
                    f"Pruned {report.images_pruned} images; removed {report.files_removed} files "
                    f"({report.bytes_freed / 2**20:.1f} MiB)."
                )
            case "export-user":
                export = await db.export_user(args.user_id, args.out)
                print(
                    f"Exported {export.jobs} jobs and {export.images} images to {export.json_path}."
                )
            case "delete-user":
                erased = await db.delete_user(args.user_id)
                print(f"Erased user {args.user_id} and their {erased} jobs.")
            case "check":
                return await _check(db, deep=args.deep)
    return 0


async def _check(db: Database, *, deep: bool) -> int:
    report = await db.check(deep=deep)
    for line in report.integrity:
        print(f"integrity: {line}")
    for path in report.missing_files:
        print(f"missing file: {path}")
    for path in report.damaged_files:
        print(f"damaged file: {path}")
    for job_id in report.incomplete_jobs:
        print(f"job #{job_id} is done but has no images")
    for path in report.orphan_files:
        print(f"orphan file (no row uses it; `prune` removes it): {path}")
    print("check: ok" if report.ok else "check: PROBLEMS FOUND")
    return 0 if report.ok else EXIT_PROBLEMS


def _print_usage(label: str, rows: list[Usage]) -> None:
    print(f"\n{label:>20}  {'jobs':>7}  {'images':>7}  {'GPU-s':>10}  {'mean wait s':>11}")
    for row in rows:
        wait = "-" if row.mean_wait_s is None else f"{row.mean_wait_s:.1f}"
        print(
            f"{row.key!s:>20}  {row.jobs:>7}  {row.images:>7}  {row.gpu_seconds:>10.1f}  {wait:>11}"
        )


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"{text} should be a number of days above 0")
    return value


def _user_id(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a user id (a Discord snowflake)")
    return int(text)
