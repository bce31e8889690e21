"""Durable storage of jobs, images, users and settings on SQLite (aiosqlite)."""
