"""Finding models and their tokenizers: the embedded demo model, a local folder, or a Hub id."""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from studio.config import DEMO_MODEL, DEMO_MODEL_DIR, HUB_PROBE_S


class ModelNotFound(Exception):
    """A model name that is neither `demo`, a model folder, nor a reachable Hub id."""


# What a shared server (studio.spaces.multiuser) reads from a model box; said the same whether the path exists.
SHARED_MODEL_RULE = ("On this shared studio a model is `demo`, a Hub id (owner/name) or a folder inside the "
                     "studio's home (STUDIO_HOME); other folders of the server are not read.")


def typed_name(name: str | None, what: str = "model") -> str:
    """A model, tokenizer or adapter name typed on the page, stripped. A name with a `..` step is never read,
    in any mode (ModelNotFound)."""
    name = (name or "").strip()
    if ".." in Path(name.replace("\\", "/")).parts:
        raise ModelNotFound(f"The {what} name has a `..` step in it, which the studio never reads: type a Hub id "
                            "(owner/name), `demo`, or the folder's full path.")
    return name


def _path_like(name: str) -> bool:
    return name.startswith(("/", "~", ".", "\\")) or ".." in Path(name).parts


def resolve_model(name: str | None) -> str:
    """Map a model name to what `from_pretrained` takes: a folder path or a Hub id.

    On a shared server (studio.spaces.multiuser) a folder must be inside the studio's home, else ModelNotFound
    with SHARED_MODEL_RULE, whether or not it exists (no existence oracle).
    """
    from studio.spaces import inside_studio, multiuser

    name = (name or DEMO_MODEL).strip()
    if name == DEMO_MODEL:
        if not (DEMO_MODEL_DIR / "config.json").exists():
            raise ModelNotFound(
                f"The demo model is missing from {DEMO_MODEL_DIR}. Rebuild it with "
                "`python -m studio.demo.build`."
            )
        return str(DEMO_MODEL_DIR)
    path = Path(name).expanduser()
    if multiuser() and (_path_like(name) or path.exists()) and not inside_studio(path):
        raise ModelNotFound(SHARED_MODEL_RULE)
    if path.exists():
        if not (path / "config.json").exists() and not (path / "tokenizer_config.json").exists():
            raise ModelNotFound(
                f"{path} is a folder but holds no config.json or tokenizer_config.json: point to the "
                "folder that `save_pretrained` wrote."
            )
        return str(path)
    if name.count("/") != 1 or name.startswith(("/", ".", "~")):
        raise ModelNotFound(
            f"{name!r} is not `demo`, an existing folder, or a Hub id like "
            "`deepseek-ai/DeepSeek-R1-Distill-Qwen-7B`."
        )
    return name


def check_model_available(name: str | None) -> str:
    """Resolve a model name typed on the page and make sure it can be loaded here; ModelNotFound says why not.

    A Hub id that is not in the local cache is asked of the Hub first, bounded to HUB_PROBE_S seconds: with no
    network it fails within that, with the reason, instead of after the download's retries (about 50 s).
    """
    target = resolve_model(typed_name(name) or None)
    if Path(target).exists():
        return target
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(target, "config.json"), str):
        return target  # in the local cache: loads without the network
    if hub_offline():
        raise ModelNotFound(
            f"{target} is not downloaded on this machine and the Hub is switched off (HF_HUB_OFFLINE). Download it "
            f"on a connected machine (`huggingface-cli download {target}`) and copy the cache, or pick a local folder.")
    _require_on_hub(target)
    return target


def probe_hub_model(repo_id: str, deadline_s: float = HUB_PROBE_S) -> tuple[str, str | None]:
    """("ok" | "missing" | "unreachable", why) for a model id, in at most `deadline_s` seconds.

    The question runs in a daemon thread with a deadline: huggingface_hub's timeouts do not cover DNS
    resolution, and its downloads retry with backoff; a thread still asking past the deadline is left to end.
    """
    from huggingface_hub import HfApi  # imported before the clock starts: the first import takes a moment
    from huggingface_hub.errors import RepositoryNotFoundError  # gated and private repos too

    outcome: dict = {}
    done = threading.Event()

    def ask():
        try:
            HfApi().model_info(repo_id, timeout=deadline_s)
            outcome["status"] = "ok"
        except RepositoryNotFoundError:
            outcome["status"] = "missing"
        except Exception as error:  # network errors come in many types; all mean the same here
            outcome["error"] = error
        finally:
            done.set()

    threading.Thread(target=ask, name=f"probe-hub-{repo_id}", daemon=True).start()
    if not done.wait(deadline_s):
        return "unreachable", f"it did not answer within {deadline_s:g} s"
    if "status" in outcome:
        return outcome["status"], None
    error = outcome["error"]
    text = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    return "unreachable", f"{type(error).__name__}: {text}" if text else type(error).__name__


def _require_on_hub(target: str) -> None:
    status, why = probe_hub_model(target)
    if status == "missing":
        raise ModelNotFound(f"The Hugging Face Hub has no model {target!r} (or it is private or gated and this "
                            "machine has no access). Check the id, or pick `demo` or a local model folder.")
    if status == "unreachable":
        raise ModelNotFound(
            f"{target} is not downloaded on this machine and the Hugging Face Hub cannot be reached ({why}). Check "
            f"the network, or download it on a connected machine (`huggingface-cli download {target}`) and copy "
            "the cache, or pick `demo` or a local model folder.")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


@functools.lru_cache(maxsize=4)
def load_tokenizer(name: str | None = None):
    """The tokenizer of a model, cached. A Hub id that is not cached locally fails with a clear message."""
    from transformers import AutoTokenizer

    target = resolve_model(name)
    try:
        # Try the local cache first so an offline machine never waits on the network.
        return AutoTokenizer.from_pretrained(target, local_files_only=True)
    except OSError:
        if Path(target).exists() or hub_offline():
            raise ModelNotFound(
                f"No tokenizer for {name!r} on this machine"
                + (" and the Hub is switched off (HF_HUB_OFFLINE)" if hub_offline() else "")
                + ". Download the model on a connected machine (`huggingface-cli download "
                f"{name}`) or pass a local folder."
            ) from None
    _require_on_hub(target)  # no network: say so within seconds, not after the download's retries
    try:
        return AutoTokenizer.from_pretrained(target)
    except Exception as error:  # network errors come in many types; all mean the same to the user
        raise ModelNotFound(
            f"Could not fetch the tokenizer of {name!r} from the Hugging Face Hub ({type(error).__name__}: "
            f"{error}). Check the id and the network, or pass a local model folder."
        ) from None


# --------------------------------------------------------------------------------------------------
# Devices and loading for training

ALL_LINEAR = "all-linear"
ATTENTION_ONLY = ["q_proj", "k_proj", "v_proj", "o_proj"]  # the seed recipe's targets


class UnsupportedSetup(Exception):
    """A combination the hardware cannot run (e.g. QLoRA without CUDA); the message says why."""


@dataclass(frozen=True)
class Device:
    kind: str  # cuda | cpu
    name: str
    memory_gib: float  # total memory of the device (system memory on CPU)
    bf16: bool

    def describe(self) -> str:
        return f"{self.name} ({self.memory_gib:.0f} GiB)"


def detect_device() -> Device:
    import torch

    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        return Device("cuda", properties.name, properties.total_memory / 2**30, torch.cuda.is_bf16_supported())
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory = 0.0
    return Device("cpu", f"CPU ({os.cpu_count()} cores)", memory, False)


def attention_backend(device: Device) -> str:
    """flash-attention 2 when installed and the GPU has it (Ampere or newer), otherwise SDPA."""
    if device.kind == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        import torch

        if torch.cuda.get_device_capability(0)[0] >= 8:
            return "flash_attention_2"
    return "sdpa"


# varlen: packed and unpadded batches through studio.attention (flash attention per sequence), the rest as flash.
SDPA_BACKENDS = ("flash", "cudnn", "efficient", "auto", "varlen")


def prefer_sdpa_backend(name: str):
    """Put one SDPA backend first (the others stay as fallbacks) while training on a GPU.

    Flash by default: measured on an H200 with PyTorch 2.11, PyTorch's own first choice there (cuDNN attention)
    spent 9–21 ms of CPU per call when the sequence length changed from one batch to the next, as real
    data does, while the GPU waited; flash first was 11 % faster there (docs/benchmarks.md).
    """
    import contextlib

    import torch

    if name == "auto" or not torch.cuda.is_available():
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    order = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
             "efficient": SDPBackend.EFFICIENT_ATTENTION}
    first = order.pop("flash" if name == "varlen" else name)
    return sdpa_kernel([first, *order.values(), SDPBackend.MATH], set_priority=True)


def load_base_for_training(name: str, method: str, device: Device, gradient_checkpointing: bool, *,
                           offload: bool = False, upcast: bool = False, attention: str = "varlen"):
    """The base model ready for LoRA: bf16 on a GPU that has it, fp32 on CPU; 4-bit NF4 for QLoRA.

    offload: keep the checkpointed activations in pinned CPU memory, copied on a side stream (studio.train.offload).
    upcast: for QLoRA, PEFT's k-bit preparation, which casts norms, embeddings and the head to fp32.
    attention: "varlen" runs packed and unpadded batches through studio.attention unless flash-attn 2 is
    installed (which already attends per sequence).
    """
    import torch
    from transformers import AutoModelForCausalLM

    target = resolve_model(name)
    kwargs = {"attn_implementation": attention_backend(device)}
    if attention == "varlen" and kwargs["attn_implementation"] == "sdpa":
        from studio.attention import register

        kwargs["attn_implementation"] = register()
    if method == "qlora":
        if device.kind != "cuda":
            raise UnsupportedSetup(
                "QLoRA needs a CUDA GPU: bitsandbytes' 4-bit training kernels do not run on CPU. "
                "Choose LoRA to train on this machine.")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if device.bf16 else torch.float32)
    if device.kind == "cuda":
        kwargs["dtype"] = torch.bfloat16 if device.bf16 else torch.float32  # never fp16: R1 overflows in fp16
        # One GPU per process: under `accelerate launch` (data parallel) each process takes its LOCAL_RANK.
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    else:
        kwargs["dtype"] = torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(target, local_files_only=Path(target).exists() or hub_offline(),
                                                     **kwargs)
    except OSError as error:
        raise ModelNotFound(f"Could not load the model {name!r}: {error}") from None
    model.config.use_cache = False
    if method == "qlora" and upcast:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    for parameter in model.parameters():
        parameter.requires_grad_(False)  # LoRA adds the only trainable weights
    if gradient_checkpointing:
        # Also makes the embeddings' output require grad (transformers does it for input_ids models), so the
        # gradient reaches the LoRA layers through the frozen, checkpointed blocks.
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        if offload:
            from studio.train.offload import enable_async_offload

            enable_async_offload(model)
    model.train()  # from_pretrained returns eval mode: checkpointing and dropout act only in training mode
    return model
