"""ONNX Runtime embedder: the packaged model, exported once to ONNX, run without torch.

`onnx_model_ensure` exports the model's transformer to ONNX (torch, offline, once) and builds an
int8 copy (dynamic quantization, weights per channel) in which the MatMuls that drift most stay
fp32. The int8 copy is kept only if its vectors stay within `MIN_INT8_COSINE` of the fp32
export on probe texts. Both files live in a cache folder keyed by the model's weights and the
tool versions, written atomically (built in a temporary folder, then renamed) under a file lock,
so worker processes starting together neither corrupt it nor export twice.

`OnnxEmbedder` then needs only `onnxruntime`, `tokenizers` and numpy: it tokenizes with the
model's own tokenizer.json (truncated at the model's max_seq_length), runs the transformer, and
mean-pools and L2-normalizes by hand, as the reference model's Pooling and Normalize modules do.
Texts of at least `INT8_MIN_TOKENS` tokens (passages: nearly all the work) go through the int8
model; shorter ones (headings, questions), where int8 drifts most and costs least, through fp32.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

OPSET = 17
EXPORT_VERSION = 3  # bump when the export or quantization recipe changes
MIN_INT8_COSINE = 0.99
# MatMuls left in fp32. Quantizing every MatMul of all-MiniLM-L6-v2 drifts to cosine 0.97-0.98
# on some CUAD chunks and sentences. Quantizing one MatMul at a time showed that the
# feed-forward layers (outlier activations) and one value projection cause most of it; with
# these seven in fp32 the worst of 296 CUAD chunks is 0.991, of 3,600 sentences 0.993.
FP32_NODES = (
    "/layer.0/output/dense/",
    "/layer.1/output/dense/",
    "/layer.2/output/dense/",
    "/layer.1/intermediate/dense/",
    "/layer.3/intermediate/dense/",
    "/layer.4/intermediate/dense/",
    "/layer.4/attention/self/value/",
)
# Below this many tokens int8 drifts more (0.98 on one-word texts) and saves little: use fp32.
INT8_MIN_TOKENS = 16
DEFAULT_MAX_TOKENS = 256
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
META_FILE = "meta.json"

# Probe texts for the int8 check at export time: the kinds of passages ingestion sees.
PROBE_TEXTS = [
    "The Distributor shall receive a discount of thirty (30) per cent against the price list.",
    "12.2 Notice. Either party may terminate this Agreement upon ninety (90) days' written "
    "notice to the other party if the other party materially breaches any provision hereof.",
    "ARTICLE IV - CONFIDENTIALITY",
    "Patient was discharged on 14 March with instructions to follow up in two weeks.",
    "Staff must wear identification badges at all times while on the premises.",
    "THIS AGREEMENT shall be governed by and construed in accordance with the laws of the "
    "State of New York, without regard to its conflict of laws principles.",
    "Table 3: Quarterly revenue (USD thousands) | Q1 1,204 | Q2 1,318 | Q3 1,422 | Q4 1,530",
    "(a) any Losses arising out of the gross negligence or wilful misconduct of the Supplier;",
    "hello",
    "Die Vertragsparteien vereinbaren Stillschweigen über den Inhalt dieser Vereinbarung.",
]


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


def _weights_file(model_path: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (model_path / name).exists():
            return model_path / name
    raise OnnxUnavailable(f"no model weights found in {model_path}")


def cache_key(model_path: Path, *, int8: bool) -> str:
    """Changes whenever the weights, the config or the tools that built the ONNX file change."""
    import onnxruntime

    digest = hashlib.sha256()
    for part in (
        f"v{EXPORT_VERSION}",
        f"opset{OPSET}",
        f"ort{onnxruntime.__version__}",
        "int8" if int8 else "fp32",
    ):
        digest.update(part.encode())
    digest.update((model_path / "config.json").read_bytes())
    with _weights_file(model_path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:20]


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_meta(folder: Path) -> OnnxModel | None:
    meta_file = folder / META_FILE
    if not meta_file.exists():
        return None
    meta = json.loads(meta_file.read_text())
    return OnnxModel(
        fp32_path=folder / FP32_FILE,
        int8_path=folder / INT8_FILE if meta["int8"] else None,
        min_cosine=meta["min_cosine"],
    )


def _export(model_path: Path, target: Path) -> None:
    """Export the transformer (token ids in, last hidden state out) with dynamic batch/length."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModel

    class Encoder(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            out = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    model = AutoModel.from_pretrained(str(model_path), attn_implementation="eager")
    model.eval()
    ids = torch.ones((2, 16), dtype=torch.long)
    dynamic = {0: "batch", 1: "tokens"}
    with torch.no_grad():
        torch.onnx.export(
            Encoder(model),
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(target),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                "input_ids": dynamic,
                "attention_mask": dynamic,
                "token_type_ids": dynamic,
                "last_hidden_state": dynamic,
            },
            opset_version=OPSET,
            dynamo=False,
        )


def _quantize(source: Path, target: Path) -> None:
    """Dynamic int8 (weights per channel), keeping the most drift-prone MatMuls in fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    keep = [
        node.name
        for node in onnx.load(str(source), load_external_data=False).graph.node
        if any(pattern in node.name for pattern in FP32_NODES)
    ]
    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=keep,
    )


def onnx_model_ensure(model_path: Path, cache_dir: Path, *, int8: bool = True) -> OnnxModel:
    """The cached ONNX model for `model_path`, exported (and quantized) on first use."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = cache_key(model_path, int8=int8)
    folder = cache_dir / key
    found = _read_meta(folder)
    if found is not None:
        return found
    with _file_lock(cache_dir / f".{key}.lock"):
        found = _read_meta(folder)  # another process may have finished while we waited
        if found is not None:
            return found
        for stale in cache_dir.glob(f".{key}-*"):  # left by a process killed mid-export
            shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache_dir))
        try:
            logger.info("exporting %s to ONNX in %s", model_path, folder)
            _export(model_path, work / FP32_FILE)
            use_int8, min_cos = False, None
            if int8:
                _quantize(work / FP32_FILE, work / INT8_FILE)
                min_cos = _min_cosine(model_path, work / FP32_FILE, work / INT8_FILE)
                use_int8 = min_cos >= MIN_INT8_COSINE
                if not use_int8:
                    logger.warning(
                        "int8 ONNX model drifts from fp32 (min cosine %.4f < %.2f); using fp32",
                        min_cos,
                        MIN_INT8_COSINE,
                    )
                    (work / INT8_FILE).unlink()
            meta = {"int8": use_int8, "min_cosine": min_cos, "source": str(model_path)}
            (work / META_FILE).write_text(json.dumps(meta))  # written last: marks it complete
            shutil.rmtree(folder, ignore_errors=True)  # an incomplete folder from older code
            os.rename(work, folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    found = _read_meta(folder)
    if found is None:
        raise OnnxUnavailable(f"ONNX export did not produce {folder / META_FILE}")
    logger.info("ONNX model ready in %s (int8: %s)", folder, found.int8_path is not None)
    return found


def _min_cosine(model_path: Path, fp32: Path, int8: Path) -> float:
    """Worst cosine between the int8 (mixed) embedder and plain fp32 on the probe texts."""
    ref = OnnxEmbedder(model_path, fp32, batch_size=16, threads=0, name="reference")
    cand = OnnxEmbedder(model_path, fp32, int8, batch_size=16, threads=0, name="candidate")
    a = np.asarray(ref.embed(PROBE_TEXTS))
    b = np.asarray(cand.embed(PROBE_TEXTS))
    return float((a * b).sum(axis=1).min())


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
        self._int8 = _session(int8_path, threads) if int8_path is not None else None
        self._inputs = {i.name for i in self._fp32.get_inputs()}
        self._lock = threading.Lock()  # one forward pass at a time per process
        self.batch_size = batch_size
        self.name = name
        self.backend = "onnx-int8" if self._int8 is not None else "onnx-fp32"
        self.dimensions = int(self._fp32.get_outputs()[0].shape[-1])

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        encodings = self._tokenizer.encode_batch(texts)
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        with self._lock:
            for batch in self._batches([len(e.ids) for e in encodings]):
                out[batch] = self._embed_batch([encodings[i] for i in batch])
        return out.tolist()

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

    def _embed_batch(self, encodings: list) -> np.ndarray:  # type: ignore[type-arg]
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = enc.attention_mask
            types[row, :n] = enc.type_ids
        shortest = min(len(e.ids) for e in encodings)
        session = self._int8 if self._int8 is not None and shortest >= INT8_MIN_TOKENS else None
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        feeds = {k: v for k, v in feeds.items() if k in self._inputs}
        hidden = (session or self._fp32).run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.clip(norms, 1e-12, None)


def _session(path: Path, threads: int):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle threads must not spin between batches: parsing and database writes share the cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
