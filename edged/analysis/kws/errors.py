"""Errors of keyword spotting; each message names the file, keyword or audio property at fault."""

from __future__ import annotations


class KwsError(Exception):
    """Base of keyword-spotting errors."""


class ModelError(KwsError):
    """A model file is missing, unreadable, corrupt or of the wrong shape (the message names the file)."""


class UnknownKeywordError(KwsError):
    """A keyword names no model; the message lists the keywords that are available."""


class AudioFormatError(KwsError):
    """Audio that keyword spotting cannot take (and will not guess how to convert)."""
