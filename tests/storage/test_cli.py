"""The owner's command line, `python -m storage --db PATH ...`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from storage import Database
from storage.cli import main
from storage.schema import latest_version
from tests.storage.conftest import finished_job, owner

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def filled_db(db_path: Path, make_request) -> Path:
    async def fill() -> None:
        async with await Database.open(db_path) as db:
            for n in range(3):
                await finished_job(db, make_request(f"job {n}"), owner(user_id=10 + n % 2), base=n)

    asyncio.run(fill())
    return db_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_migrate_creates_then_reports_up_to_date(tmp_path: Path, capsys) -> None:
    path = tmp_path / "new" / "atelier.db"
    code, out, _ = run(capsys, "--db", str(path), "migrate")
    assert code == 0
    assert f"schema version {latest_version()}" in out
    assert path.is_file()
    assert run(capsys, "--db", str(path), "migrate")[0] == 0


def test_stats_backup_check_prune(filled_db: Path, tmp_path: Path, capsys) -> None:
    code, out, _ = run(capsys, "--db", str(filled_db), "stats", "--days", "3650")
    assert code == 0
    assert "playground-v2.5" in out
    assert any(line.split()[:3] == ["10", "2", "2"] for line in out.splitlines())

    backup = tmp_path / "backup.db"
    assert run(capsys, "--db", str(filled_db), "backup", str(backup))[0] == 0
    images = str(filled_db.parent / "images")
    code, out, _ = run(capsys, "--db", str(backup), "--images", images, "check", "--deep")
    assert (code, out.strip()) == (0, "check: ok")
    code, _, err = run(capsys, "--db", str(filled_db), "backup", str(backup))
    assert code == 2
    assert "exists already" in err

    next(iter((filled_db.parent / "images").glob("*/*.png"))).unlink()
    code, out, _ = run(capsys, "--db", str(filled_db), "check")
    assert code == 1
    assert "missing file" in out

    code, out, _ = run(capsys, "--db", str(filled_db), "prune", "--older-than", "0.5")
    assert code == 0
    assert "Pruned 0 images" in out


def test_export_and_delete_user(filled_db: Path, tmp_path: Path, capsys) -> None:
    code, out, _ = run(capsys, "--db", str(filled_db), "export-user", "10", str(tmp_path / "x"))
    assert code == 0
    assert "Exported 2 jobs and 2 images" in out
    assert len(json.loads((tmp_path / "x" / "user-10.json").read_text())["jobs"]) == 2
    code, out, _ = run(capsys, "--db", str(filled_db), "delete-user", "10")
    assert (code, out.strip()) == (0, "Erased user 10 and their 2 jobs.")
    code, out, _ = run(capsys, "--db", str(filled_db), "export-user", "10", str(tmp_path / "y"))
    assert "0 jobs" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["prune", "--older-than", "-3"], "number of days above 0"),
        (["prune"], "--older-than"),
        (["export-user", "bob", "out"], "not a user id"),
        (["frobnicate"], "invalid choice"),
        (["stats", "--days", "many"], "not a number"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(filled_db: Path, capsys, argv, message) -> None:
    before = filled_db.read_bytes()
    with pytest.raises(SystemExit) as exited:
        main(["--db", str(filled_db), *argv])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert filled_db.read_bytes() == before


def test_a_missing_database_is_not_created_except_by_migrate(tmp_path: Path, capsys) -> None:
    code, _, err = run(capsys, "--db", str(tmp_path / "nope.db"), "stats")
    assert code == 2
    assert "no database" in err
    assert not (tmp_path / "nope.db").exists()


@pytest.mark.parametrize("command", [["check"], ["stats"], ["backup", "out.sqlite3"]])
def test_an_empty_file_is_not_made_a_database_except_by_migrate(
    tmp_path: Path, capsys, command: list[str]
) -> None:
    path = tmp_path / "atelier.sqlite3"
    path.touch()

    code, out, err = run(capsys, "--db", str(path), *command)

    assert code == 2
    assert f"{path} is an empty file, not an Atelier database; nothing was changed." in err
    assert "ok" not in out
    assert path.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atelier.sqlite3"]  # no journal either


def test_a_folder_given_as_the_database_is_named_as_a_folder(tmp_path: Path, capsys) -> None:
    code, _, err = run(capsys, "--db", str(tmp_path), "check")

    assert code == 2
    assert f"{tmp_path} is a folder; give the database file (atelier.sqlite3) in it." in err


def test_python_dash_m_storage_runs(filled_db: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "storage", "--db", str(filled_db), "check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "check: ok")
    done = subprocess.run(
        [sys.executable, "-m", "storage", "--db", str(filled_db)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "COMMAND" in done.stderr
