"""Errors raised by storage; `str(error)` is a sentence fit for the person who has to act on it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from generation.jobs import StoreUnavailable


class StorageError(Exception):
    """Base class of every storage failure."""


class DatabaseUnusable(StorageError):
    """The file cannot be used as Atelier's database; it has been left exactly as it was."""


class NotAtelierDatabase(DatabaseUnusable):
    """The file is not a SQLite database, or a SQLite database of some other program."""


class NewerSchema(DatabaseUnusable):
    """The database was written by a newer Atelier than this one."""


class CorruptDatabase(DatabaseUnusable):
    """SQLite reports the file as damaged."""


class UnknownJob(StorageError, LookupError):
    """No job has this id."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        super().__init__(f"There is no job #{job_id}.")


class InvalidTransition(StorageError):
    """A lifecycle change that the job's current status does not allow."""

    def __init__(self, job_id: int, current: str, wanted: str) -> None:
        self.job_id = job_id
        self.current = current
        self.wanted = wanted
        super().__init__(f"Job #{job_id} is {current}; it cannot become {wanted}.")


class InvalidValue(StorageError, ValueError):
    """A setting or argument outside what storage accepts (a negative limit, ...)."""


class StorageUnavailable(StorageError, StoreUnavailable):
    """The database or the image folder cannot be used right now (read-only, full, missing);
    the same operation may succeed once that is fixed."""


@contextmanager
def unavailable_as_storage_error() -> Iterator[None]:
    """Raise SQLite's `OperationalError` (a read-only or full disk, a locked file) as
    `StorageUnavailable`, so callers handle one error type."""
    try:
        yield
    except sqlite3.OperationalError as error:
        raise StorageUnavailable(f"The database cannot be used right now ({error}).") from error
