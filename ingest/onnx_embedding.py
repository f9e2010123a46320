"""ONNX Runtime embedder: the packaged model, run without torch.

`OnnxEmbedder` needs only `onnxruntime`, `tokenizers` and numpy: it tokenizes with the model's
own tokenizer.json (truncated at the model's max_seq_length), runs the transformer, and
mean-pools and L2-normalizes by hand, as the reference model's Pooling and Normalize modules do.
Texts of at least `INT8_MIN_TOKENS` tokens (passages: nearly all the work) go through the int8
model; shorter ones (headings, questions), where int8 drifts most and costs least, through fp32.
The ONNX files come from ingest/onnx_export.py.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tokenizers import Encoding

logger = logging.getLogger(__name__)

# Below this many tokens int8 drifts more (0.98 on one-word texts) and saves little: use fp32.
INT8_MIN_TOKENS = 16

DEFAULT_MAX_TOKENS = 256

FP32_FILE = "model.onnx"

INT8_FILE = "model.int8.onnx"

META_FILE = "meta.json"


class OnnxUnavailable(RuntimeError):
    """The ONNX backend cannot be used here (missing package, failed export or load)."""


@dataclass(frozen=True)
class OnnxModel:
    fp32_path: Path
    int8_path: Path | None  # None: int8 not asked for, or it drifted too far
    min_cosine: float | None  # int8 vs fp32 on the probe texts, when quantization was tried


def max_tokens(model_path: Path) -> int:
    """The reference model's max_seq_length (sentence_bert_config.json), else 256."""
    config = model_path / "sentence_bert_config.json"
    if config.exists():
        value = json.loads(config.read_text()).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_MAX_TOKENS


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class OnnxEmbedder:
    """Unit-length sentence embeddings from an ONNX transformer, pooled by hand.

    With `int8_path`, texts of at least INT8_MIN_TOKENS tokens run through the int8 model and
    shorter ones through fp32; without it, everything runs through fp32.
    """

    def __init__(
        self,
        model_path: Path,
        fp32_path: Path,
        int8_path: Path | None = None,
        *,
        batch_size: int,
        threads: int,
        name: str,
    ) -> None:
        from tokenizers import Tokenizer

        tokenizer_file = model_path / "tokenizer.json"
        if not tokenizer_file.exists():
            raise OnnxUnavailable(f"{tokenizer_file} is missing")
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        # tokenizer.json ships with its own 128-token truncation and fixed padding; the
        # reference model truncates at max_seq_length and pads per batch (done below).
        self._tokenizer.enable_truncation(max_length=max_tokens(model_path))
        self._tokenizer.no_padding()
        threads = threads or available_cores()
        self._fp32 = _session(fp32_path, threads)
        # The int8 model (passages: nearly all of ingestion's work) runs one batch per core,
        # each on one thread, rather than one batch at a time over all cores: a forward pass
        # has serial stretches that leave cores idle (measured on 1,043 CUAD chunks, 2 cores:
        # 61-65 chunks/s with 2 intra-op threads, 73-78 with two 1-thread batches at once;
        # the vectors are identical). Short texts (queries) keep the multi-threaded fp32 model.
        self._int8 = _session(int8_path, 1) if int8_path is not None else None
        self._parallel = threads if self._int8 is not None else 1
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        self._inputs = {i.name for i in self._fp32.get_inputs()}
        self._lock = threading.Lock()  # one embed() at a time per process
        self.batch_size = batch_size
        self.name = name
        self.backend = "onnx-int8" if self._int8 is not None else "onnx-fp32"
        self.dimensions = int(self._fp32.get_outputs()[0].shape[-1])

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        encodings = self._tokenizer.encode_batch(texts)
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)

        def run(batch: list[int]) -> None:
            out[batch] = self._embed_batch([encodings[i] for i in batch])

        with self._lock:
            batches = list(self._batches([len(e.ids) for e in encodings]))
            parallel = [b for b in batches if self._uses_int8(encodings, b)]
            if len(parallel) == 1 and self._parallel > 1 and len(parallel[0]) >= 16:
                # One batch would leave all cores but one idle: halve it.
                half = len(parallel[0]) // 2
                parallel = [parallel[0][:half], parallel[0][half:]]
            for batch in batches:
                if not self._uses_int8(encodings, batch):
                    run(batch)
            if len(parallel) > 1 and self._parallel > 1:
                list(self._thread_pool().map(run, parallel))
            else:
                for batch in parallel:
                    run(batch)
        return out.tolist()

    def _thread_pool(self) -> ThreadPoolExecutor:
        """The pool of this process: a worker forked after the pool was made gets its own
        (the parent's threads do not exist in the child)."""
        if self._pool is None or self._pool_pid != os.getpid():
            self._pool = ThreadPoolExecutor(self._parallel, thread_name_prefix="onnx")
            self._pool_pid = os.getpid()
        return self._pool

    def _uses_int8(self, encodings: list[Encoding], batch: list[int]) -> bool:
        return self._int8_for(min(len(encodings[i].ids) for i in batch))

    def _int8_for(self, shortest: int) -> bool:
        """Whether a batch whose shortest text has this many tokens runs through int8."""
        return self._int8 is not None and shortest >= INT8_MIN_TOKENS

    def _batches(self, lengths: list[int]) -> Iterator[list[int]]:
        """Indices grouped by similar token length (results go back in input order).

        Little padding saves work, and it matters for int8: activations are quantized with one
        range per batch, which long padded rows would widen for a short text's tokens.
        """
        order = sorted(range(len(lengths)), key=lengths.__getitem__)
        batch: list[int] = []
        for i in order:
            if batch and (
                len(batch) == self.batch_size
                or lengths[i] > 2 * lengths[batch[0]] + 8
                or (lengths[batch[0]] < INT8_MIN_TOKENS <= lengths[i])
            ):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def _feeds(self, encodings: list[Encoding]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The model's inputs for a batch, padded to its longest text, and the mask."""
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = enc.attention_mask
            types[row, :n] = enc.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {k: v for k, v in feeds.items() if k in self._inputs}, mask

    def _embed_batch(self, encodings: list[Encoding]) -> np.ndarray:
        feeds, mask = self._feeds(encodings)
        shortest = min(len(e.ids) for e in encodings)
        int8 = self._int8
        session = int8 if int8 is not None and self._int8_for(shortest) else self._fp32
        hidden = session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.clip(norms, 1e-12, None)


def _session(path: Path, threads: int) -> Any:  # an onnxruntime.InferenceSession (untyped)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle threads must not spin between batches: parsing and database writes share the cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
