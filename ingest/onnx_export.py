"""Exporting the packaged model to ONNX once, and its int8 copy.

`onnx_model_ensure` exports the model's transformer to ONNX (torch, offline, once) and builds an
int8 copy: the few outlier activation channels of the feed-forward MatMuls are scaled down (and
their weight rows up) from peaks measured on built-in calibration texts, then every MatMul is
quantized dynamically (weights per channel; see OUTLIER_TARGET). The int8 copy is kept only if
its vectors stay within `MIN_INT8_COSINE` of the fp32 export on probe texts. Both files live in
a cache folder keyed by the model's weights and the tool versions, written atomically (built in
a temporary folder, then renamed) under a file lock, so worker processes starting together
neither corrupt it nor export twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .onnx_embedding import (
    FP32_FILE,
    INT8_FILE,
    META_FILE,
    OnnxEmbedder,
    OnnxModel,
    OnnxUnavailable,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from onnx import NodeProto

logger = logging.getLogger(__name__)

OPSET = 17

EXPORT_VERSION = 4  # bump when the export or quantization recipe changes

MIN_INT8_COSINE = 0.99

# Outlier channels. A few hidden channels of all-MiniLM-L6-v2 carry activations 6-15x the
# median channel's (channel 99 of every feed-forward input at about 28 against 2; one channel
# of each feed-forward output's input). ONNX Runtime quantizes activations with one range per
# tensor, so those channels squeeze every other channel into a few int8 steps: quantizing every
# MatMul as it is drifts to cosine 0.98 on CUAD chunks. Before quantizing, the inputs of the
# feed-forward and attention-output MatMuls (OUTLIER_MATMULS) are divided per channel so that an
# outlier channel's calibrated peak becomes OUTLIER_TARGET x the median channel's, and the
# weight rows are multiplied back (exact in fp32; SmoothQuant restricted to the outliers). Then
# every MatMul runs int8: 1.5x the speed of the earlier recipe, which kept seven MatMuls in
# fp32, within cosine 0.99 of the reference.
OUTLIER_FACTOR = 6.0

OUTLIER_TARGET = 5.0

OUTLIER_MATMULS = ("/intermediate/dense/", "/output/dense/")

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

# Written for calibration (not taken from any evaluation set): passages of the kinds Attest
# ingests. Joined with the probe texts into longer passages, they give each channel's peak.
CALIBRATION_SENTENCES = [
    "1.1 Definitions. In this Agreement, unless the context otherwise requires, the following "
    "words and expressions shall have the meanings set out below.",
    "The Licensee shall pay to the Licensor a royalty of five percent (5%) of Net Sales of "
    "all Licensed Products sold during the Term, payable within thirty (30) days after the "
    "end of each calendar quarter.",
    "Neither party shall be liable for any indirect, incidental, special or consequential "
    "damages, including loss of profits, arising out of or in connection with this Agreement.",
    "This Agreement may not be assigned by either party without the prior written consent of "
    "the other party, which consent shall not be unreasonably withheld.",
    "IN WITNESS WHEREOF, the parties have caused this Agreement to be executed by their duly "
    "authorized representatives as of the Effective Date.",
    "The Receiving Party shall hold the Confidential Information in strict confidence and "
    "shall not disclose it to any third party except to its employees who need to know it.",
    "Exhibit A - Pricing Schedule | Product | Unit Price | Minimum Order | Widget A | $12.50 "
    "| 1,000 | Widget B | $9.75 | 2,500",
    "SECTION 7. INDEMNIFICATION. The Company shall indemnify and hold harmless the Executive "
    "from any claims, losses, liabilities and expenses (including reasonable attorneys' "
    "fees).",
    "Chief complaint: shortness of breath for three days. History of present illness: "
    "67-year-old male with a history of COPD and hypertension presents with worsening "
    "dyspnea.",
    "Medications: lisinopril 10 mg orally once daily; metformin 500 mg twice daily; albuterol "
    "inhaler as needed. Allergies: penicillin (rash).",
    "Laboratory results: hemoglobin 11.2 g/dL, white blood cell count 12,400/uL, creatinine "
    "1.4 mg/dL, glucose 182 mg/dL.",
    "Background: Randomized controlled trials have evaluated the effect of early mobilization "
    "on outcomes in critically ill patients. Methods: We searched MEDLINE and EMBASE.",
    "Results: Of 412 patients enrolled, 203 were assigned to the intervention group. The "
    "primary outcome occurred in 18.2% versus 24.6% (odds ratio 0.68; 95% CI 0.45-1.02; "
    "P=0.07).",
    "Conclusions: In this cohort, higher serum vitamin D levels were associated with a lower "
    "risk of fracture, although residual confounding cannot be excluded.",
    "All employees must complete annual information security training. Passwords must be at "
    "least twelve characters long and must not be reused across systems.",
    "Requests for annual leave must be submitted to the line manager at least two weeks in "
    "advance and are subject to operational requirements.",
    "The Bank shall verify the identity of each customer before opening an account, in "
    "accordance with applicable anti-money laundering regulations.",
    "Any dispute arising out of or relating to this Agreement shall be finally settled by "
    "arbitration in London under the Rules of the London Court of International Arbitration.",
    "Q: What is the termination notice period? A: Either party may terminate on ninety (90) "
    "days' written notice.",
    "Does the contract contain a non-compete clause?",
    "WHEREAS, the Company desires to retain the services of the Consultant, and the "
    "Consultant is willing to provide such services on the terms set forth herein;",
    "(i) the Supplier's total aggregate liability shall not exceed the fees paid in the "
    "twelve (12) months preceding the claim; and (ii) nothing limits liability for fraud.",
]


def calibration_texts() -> list[str]:
    """The probe texts, the sentences above, and 40 passages of 3-9 of them (fixed order)."""
    import random

    base = list(PROBE_TEXTS) + CALIBRATION_SENTENCES
    rng = random.Random(0)
    texts = list(base)
    for _ in range(40):
        rng.shuffle(base)
        texts.append(" ".join(base[: rng.randint(3, 9)]))
    return texts


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

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> torch.Tensor:
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


def _channel_peaks(model_path: Path, source: Path, tensors: list[str]) -> dict[str, np.ndarray]:
    """Per-channel peak |activation| of `tensors` over the calibration texts (fp32 model)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    model = onnx.load(str(source))
    for name in tensors:
        model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    embedder = OnnxEmbedder(model_path, source, batch_size=16, threads=0, name="calibration")
    encodings = embedder._tokenizer.encode_batch(calibration_texts())
    peaks: dict[str, np.ndarray] = {}
    for start in range(0, len(encodings), 16):
        feeds, mask = embedder._feeds(encodings[start : start + 16])
        for name, value in zip(tensors, session.run(tensors, feeds), strict=True):
            peak = np.abs(value[mask.astype(bool)]).max(axis=0)
            peaks[name] = np.maximum(peaks[name], peak) if name in peaks else peak
    return peaks


def _scale_outliers(model_path: Path, source: Path, target: Path) -> int:
    """Divide the outlier channels of the feed-forward MatMuls' inputs down to OUTLIER_TARGET x
    the median channel's peak and multiply the weight rows back; returns the channels scaled."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    weights = {init.name: init for init in model.graph.initializer}
    matmuls = [
        node
        for node in model.graph.node
        if node.op_type == "MatMul"
        and node.input[1] in weights
        and any(pattern in node.name for pattern in OUTLIER_MATMULS)
    ]
    by_input: dict[str, list[NodeProto]] = {}
    for node in matmuls:
        by_input.setdefault(node.input[0], []).append(node)
    peaks = _channel_peaks(model_path, source, sorted(by_input))
    nodes = list(model.graph.node)
    scaled = 0
    for name, consumers in by_input.items():
        peak = peaks[name]
        median = float(np.median(peak))
        outliers = np.where(peak > OUTLIER_FACTOR * median)[0]
        if not len(outliers):
            continue
        scaled += len(outliers)
        scale = np.ones_like(peak, dtype=np.float32)
        scale[outliers] = peak[outliers] / (OUTLIER_TARGET * median)
        base = name.replace("/", "_")
        model.graph.initializer.append(
            numpy_helper.from_array((1 / scale).astype(np.float32), base + "_outlier_scale")
        )
        first = min(nodes.index(node) for node in consumers)
        nodes.insert(
            first,
            helper.make_node(
                "Mul", [name, base + "_outlier_scale"], [base + "_scaled"], name=base + "_scale"
            ),
        )
        for node in consumers:
            weight = weights[node.input[1]]
            rows = numpy_helper.to_array(weight) * scale[:, None]
            weight.CopyFrom(numpy_helper.from_array(rows.astype(np.float32), weight.name))
            node.input[0] = base + "_scaled"
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(target))
    return scaled


def _quantize(model_path: Path, source: Path, target: Path) -> None:
    """Outlier channels scaled, then dynamic int8 (weights per channel) for every MatMul."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    scaled_path = target.with_name("scaled.onnx")
    channels = _scale_outliers(model_path, source, scaled_path)
    logger.info("scaled %d outlier channels before quantizing", channels)
    quantize_dynamic(str(scaled_path), str(target), weight_type=QuantType.QInt8, per_channel=True)
    scaled_path.unlink()


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
                _quantize(model_path, work / FP32_FILE, work / INT8_FILE)
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
            work.rename(folder)
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
