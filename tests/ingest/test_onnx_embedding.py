"""Issue 3, speed: the ONNX Runtime backend is the default where it works, and its int8 vectors
stay within cosine 0.99 of the reference (sentence-transformers on torch) on real chunks."""

from pathlib import Path

import numpy as np
import pytest
from django.conf import settings

from ingest import chunking, parsers
from ingest.embedding import SentenceTransformerEmbedder, default_model_path, get_embedder
from tests.conftest import EVAL

CUAD = EVAL / "cuad" / "pdf"


def cuad_chunks(limit_files: int = 6, per_file: int = 30) -> list[str]:
    files = sorted(CUAD.glob("*"))[:limit_files]
    if not files:
        pytest.fail(f"evaluation data missing: {CUAD}")
    texts: list[str] = []
    for path in files:
        parsed = parsers.parse(path.read_bytes(), path.name)
        drafts = chunking.chunk(parsed, size=settings.CHUNK_SIZE, overlap=settings.CHUNK_OVERLAP)
        texts.extend(d.text for d in drafts[:per_file])
    return texts


def test_the_default_backend_is_onnx_int8():
    assert settings.EMBEDDING_BACKEND == "onnx"
    get_embedder.cache_clear()
    embedder = get_embedder()
    assert embedder.backend == "onnx-int8", "onnxruntime did not load; the torch fallback ran"
    assert embedder.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert embedder.dimensions == 384


def test_int8_vectors_stay_within_cosine_099_of_torch_on_real_cuad_chunks():
    texts = cuad_chunks()
    assert len(texts) > 100
    # Plus short texts (questions, headings), which take the fp32 path.
    texts += ["What is the notice period?", "ARTICLE IV", "Termination", "Governing law"]
    reference = SentenceTransformerEmbedder(Path(default_model_path()), batch_size=32)
    onnx = get_embedder()
    a = np.asarray(reference.embed(texts))
    b = np.asarray(onnx.embed(texts))
    cosines = (a * b).sum(axis=1)
    worst = int(cosines.argmin())
    assert cosines.min() >= 0.99, (cosines.min(), texts[worst][:200])
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-4)


def test_int8_batches_run_side_by_side_give_the_vectors_of_one_batch_at_a_time():
    """The int8 model runs one batch per core, each on one thread; the vectors must be exactly
    those of the same batches run one after another, in the input order."""
    from ingest.onnx_embedding import OnnxEmbedder
    from ingest.onnx_export import onnx_model_ensure

    texts = [*cuad_chunks(limit_files=2, per_file=40), "Termination", "What law governs?"]
    exported = onnx_model_ensure(Path(default_model_path()), Path(settings.EMBEDDING_ONNX_DIR))
    assert exported.int8_path is not None

    def embedder(threads: int) -> OnnxEmbedder:
        return OnnxEmbedder(
            Path(default_model_path()),
            exported.fp32_path,
            exported.int8_path,
            batch_size=8,
            threads=threads,
            name="x",
        )

    side_by_side, one_at_a_time = embedder(2), embedder(1)
    assert side_by_side._parallel == 2 and one_at_a_time._parallel == 1
    a = np.asarray(side_by_side.embed(texts))
    b = np.asarray(one_at_a_time.embed(texts))
    assert side_by_side._pool is not None  # the batches did run on the pool
    assert np.allclose(a, b, atol=1e-6)
