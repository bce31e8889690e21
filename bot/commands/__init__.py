"""Slash commands, one module (a discord.py extension with `setup`) per group of commands."""
