"""Locate the shared test corpus (real sample images, see MANIFEST.tsv there).

Default: ``<repo>/../shared/corpus``; override with the ``CHATPIC_CORPUS`` environment variable.
A missing corpus or file is an error, never a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"


def corpus_dir() -> Path:
    override = os.environ.get("CHATPIC_CORPUS")
    root = Path(override) if override else DEFAULT_CORPUS
    if not root.is_dir():
        raise FileNotFoundError(
            f"test corpus directory not found: {root} (set CHATPIC_CORPUS to its location)"
        )
    return root


def corpus_path(name: str) -> Path:
    path = corpus_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"corpus file missing: {path}")
    return path


def corpus_bytes(name: str) -> bytes:
    return corpus_path(name).read_bytes()
