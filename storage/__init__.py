"""Durable storage of jobs, images, users and settings on SQLite (aiosqlite).

`Database` is the entry point; `python -m storage` is the owner's command line.
This package never imports discord, torch or diffusers.
"""

from storage.database import Database
from storage.errors import (
    CorruptDatabase,
    DatabaseUnusable,
    InvalidTransition,
    InvalidValue,
    NewerSchema,
    NotAtelierDatabase,
    StorageError,
    StorageUnavailable,
    UnknownJob,
)
from storage.people import KEEP, Keep
from storage.records import (
    AuditEntry,
    CheckReport,
    ExportReport,
    HistoryPage,
    JobMessage,
    Lineage,
    PruneReport,
    QueueSnapshot,
    Stats,
    StoredImage,
    StoredJob,
    Usage,
    UserSettings,
)

__all__ = [
    "KEEP",
    "AuditEntry",
    "CheckReport",
    "CorruptDatabase",
    "Database",
    "DatabaseUnusable",
    "ExportReport",
    "HistoryPage",
    "InvalidTransition",
    "InvalidValue",
    "JobMessage",
    "Keep",
    "Lineage",
    "NewerSchema",
    "NotAtelierDatabase",
    "PruneReport",
    "QueueSnapshot",
    "Stats",
    "StorageError",
    "StorageUnavailable",
    "StoredImage",
    "StoredJob",
    "UnknownJob",
    "Usage",
    "UserSettings",
]
