"""Hashing a prompt's word and character n-grams into buckets, and the sparse
matrix helpers the hashed featuriser builds on (`hashed_featurizer`).

Every step is vectorised or kept to one C pass, since a one-prompt routing
decision hashes the prompt on the request path.

Imports: numpy, scipy (sparse matrices) lazily, the standard library, `routing.ascii_text`.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from interlock.routing.ascii_text import WORD, ascii_stand_in

_MIX = np.uint64(0x9E3779B97F4A7C15)
_MASK32 = np.uint64(0xFFFFFFFF)


# ---------------------------------------------------------------- hashed n-grams


def char_hashes(text: str, n_min: int, n_max: int) -> np.ndarray:
    """Polynomial hashes of every character n-gram, vectorised over positions.

    The hash of an n-gram is (n * P^n + sum of code_j * P^(n-1-j)) mod 2^32; the
    sums for length n extend those for n - 1 by one character, so each length
    costs one multiply-add over the text instead of n (same values as
    hashing each length from scratch, and a large part of a decision's time).
    """
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    prime = np.uint64(1_000_003)
    out = []
    poly = codes
    for n in range(1, n_max + 1):
        if len(codes) < n:
            break
        if n > 1:
            poly = (poly[: len(codes) - n + 1] * prime + codes[n - 1 :]) & _MASK32
        if n >= n_min:
            seed = np.uint64((n * pow(1_000_003, n, 2**32)) % 2**32)
            out.append(((poly + seed) & _MASK32) ^ np.uint64(0xC0FFEE))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.uint64)


# ASCII bytes that are not \w (letters, digits, underscore) become spaces: for ASCII
# text, splitting the translated bytes gives exactly the words `WORD` finds.
_ASCII_WORD_BYTES = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_ASCII_NON_WORD_TO_SPACE = bytes(c if c in _ASCII_WORD_BYTES else 32 for c in range(256))


def _word_crcs(text: str) -> list[int]:
    r"""crc32 of each \w+ word's UTF-8 bytes. ASCII text, or text whose only
    non-ASCII characters are punctuation, skips the regex and the per-word encode
    (a third of a long prompt's hashing)."""
    ascii_text = ascii_stand_in(text)
    if ascii_text is None:
        return [zlib.crc32(w.encode()) for w in WORD.findall(text)]
    words = ascii_text.encode("ascii").translate(_ASCII_NON_WORD_TO_SPACE).split()
    return list(map(zlib.crc32, words))


def word_hashes(text: str, n_max: int) -> np.ndarray:
    words = np.array(_word_crcs(text), dtype=np.uint64)
    out = [words]
    for n in range(2, n_max + 1):
        if len(words) < n:
            break
        h = words[: len(words) - n + 1].copy()
        for j in range(1, n):
            h = ((h * _MIX) >> np.uint64(17) ^ words[j : len(words) - n + 1 + j]) & _MASK32
        out.append(h ^ np.uint64(n * 7919))
    return np.concatenate(out)


def mix_bucket(h: np.ndarray, n_features: int) -> np.ndarray:
    """Bucket of each hash: int32 when they fit, which halves the sort in `counted`."""
    out = np.int32 if n_features <= 2**31 else np.int64
    if n_features & (n_features - 1) == 0 and n_features <= 2**32:
        # A power of two (the default 2^18): the same buckets as `% n` of the 32-bit
        # mix, without numpy's slow 64-bit integer division.
        return ((h * _MIX) & np.uint64(n_features - 1)).astype(out)
    return (((h * _MIX) & _MASK32) % np.uint64(n_features)).astype(out)


def counted(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(values, return_counts=True) for a 1-d integer array, at half its
    cost on the one-prompt decision path (no generic checks, one sort)."""
    if len(values) == 0:
        return values, np.zeros(0, dtype=np.int64)
    ordered = np.sort(values)
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    return ordered[starts], np.diff(np.append(starts, len(ordered)))


def randomized_svd(x: Any, k: int, *, seed: int, oversample: int = 10,
                   power: int = 1) -> np.ndarray:
    """Top-k right singular vectors (k, d) of a sparse matrix (Halko et al.).

    Seeded and sign-fixed (largest entry of each vector positive), so a refit
    on the same prompts gives byte-identical components.
    """
    n, d = x.shape
    if n == 0 or d == 0:  # nothing to project (no bucket seen in two training prompts)
        return np.zeros((0, d))
    k = max(1, min(k, n, d))
    g = np.random.default_rng(seed).standard_normal((d, min(k + oversample, n, d)))
    q, _ = np.linalg.qr(x @ g)
    for _ in range(power):
        q, _ = np.linalg.qr(x.T @ q)
        q, _ = np.linalg.qr(x @ q)
    _, _, vt = np.linalg.svd(np.asarray((x.T @ q).T), full_matrices=False)
    vt = vt[:k]
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    return np.asarray(vt * signs[:, None])


def csr_rows(rows: Sequence[tuple[np.ndarray, np.ndarray]], width: int) -> Any:
    """(column indices, values) per row as a float32 CSR matrix of `width` columns."""
    from scipy import sparse

    nnz = sum(len(b) for b, _ in rows)
    # int32 indices when they fit: scipy then skips scanning int64 ones for their
    # range, which was a tenth of a one-prompt decision.
    index = np.int32 if max(nnz, width) < 2**31 - 1 else np.int64
    indptr = np.zeros(len(rows) + 1, dtype=index)
    indptr[1:] = np.cumsum([len(b) for b, _ in rows])
    indices = np.concatenate([b for b, _ in rows]).astype(index) if rows else np.zeros(0, index)
    data = np.concatenate([w for _, w in rows]) if rows else np.zeros(0)
    return sparse.csr_matrix((data.astype(np.float32), indices, indptr), shape=(len(rows), width))
