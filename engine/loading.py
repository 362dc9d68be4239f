"""Loading models once per process, and deriving every related pipeline from the same weights.

``ModelCache.get(entry)`` loads a registry entry's text-to-image pipeline the first time and returns the same
``LoadedModel`` afterwards; ``LoadedModel.img2img()`` and ``.inpaint()`` are built with ``from_pipe``, so they
share the UNet, VAE and text encoders instead of loading them twice. Device and dtype are chosen explicitly:
CUDA with fp16 (bf16 for SD3/FLUX) when available, else CPU with fp32; the registry entry may override.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import diffusers.utils.deprecation_utils
import torch
import transformers
from diffusers import (
    AutoencoderTiny,
    AutoPipelineForImage2Image,
    AutoPipelineForInpainting,
    AutoPipelineForText2Image,
    DDIMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)

from engine.conditioning import DEFAULT_EMBEDDING_CACHE_BYTES, EmbeddingCache
from engine.errors import ConfigError, ModelLoadError
from engine.recipe import ModelRecord
from engine.registry import ModelEntry

__all__ = ["LoadedModel", "ModelCache", "dtype_kwargs", "library_versions", "load_model", "pick_device", "pick_dtype"]

log = logging.getLogger(__name__)

_SCHEDULERS: dict[str, tuple[Any, dict[str, Any]]] = {
    "euler": (EulerDiscreteScheduler, {}),
    "euler-a": (EulerAncestralDiscreteScheduler, {}),
    "dpm++2m": (DPMSolverMultistepScheduler, {}),
    "dpm++2m-karras": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}),
    "ddim": (DDIMScheduler, {}),
    "unipc": (UniPCMultistepScheduler, {}),
}
_FLOW_MATCHING_FAMILIES = ("sd3", "flux")
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
# diffusers renamed from_pretrained's `torch_dtype` to `dtype` in mid-2026; GPU hosts may run either side.
_DTYPE_KEYWORD = "dtype" if hasattr(diffusers.utils.deprecation_utils, "_resolve_dtype") else "torch_dtype"


def dtype_kwargs(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """``from_pretrained``'s dtype argument under the name the installed diffusers expects."""
    return {_DTYPE_KEYWORD: dtype}


def pick_device(requested: str | None = None) -> torch.device:
    """``requested`` when given, else CUDA when available, else CPU."""
    if requested:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device '{requested}' was asked for, but this machine has no CUDA GPU torch can use")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(entry: ModelEntry, device: torch.device) -> torch.dtype:
    if entry.dtype != "auto":
        return _DTYPES[entry.dtype]
    if device.type != "cuda":
        return torch.float32  # half precision on CPU is slow and, for some ops, unsupported
    if entry.family in _FLOW_MATCHING_FAMILIES and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def library_versions() -> dict[str, str]:
    versions = {}
    for name in ("dreamloom", "torch", "diffusers", "transformers"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


@dataclass
class LoadedModel:
    """A registry entry's pipelines, loaded once; related pipelines are derived on first use."""

    entry: ModelEntry
    pipe: DiffusionPipeline  # text-to-image
    device: torch.device
    dtype: torch.dtype
    load_seconds: float
    embeddings: EmbeddingCache = field(default_factory=EmbeddingCache, repr=False)
    _derived: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def img2img(self) -> DiffusionPipeline:
        return self._derive("img2img", lambda: _quiet(AutoPipelineForImage2Image.from_pipe(self.pipe)))

    def inpaint(self) -> DiffusionPipeline:
        return self._derive("inpaint", lambda: _quiet(AutoPipelineForInpainting.from_pipe(self.pipe)))

    def preview_decoder(self) -> AutoencoderTiny | None:
        if not self.entry.preview_decoder:
            return None
        return self._derive("preview", lambda: self._load_preview_decoder(self.entry.preview_decoder or ""))

    def upscaler(self) -> DiffusionPipeline | None:
        if not self.entry.upscaler:
            return None
        return self._derive("upscaler", lambda: self._load_upscaler(self.entry.upscaler or ""))

    @property
    def record(self) -> ModelRecord:
        return ModelRecord(
            alias=self.entry.alias,
            source=self.entry.source,
            family=self.entry.family,
            revision=self.entry.revision,
            scheduler=type(self.pipe.scheduler).__name__,
            dtype=str(self.dtype).removeprefix("torch."),
            device=self.device.type,
        )

    @property
    def denoiser(self) -> torch.nn.Module:
        """The UNet, or the transformer of DiT models (SD3, FLUX)."""
        module: torch.nn.Module | None = getattr(self.pipe, "unet", None) or getattr(self.pipe, "transformer", None)
        if module is None:
            raise ModelLoadError(f"model '{self.entry.alias}' has neither a UNet nor a transformer")
        return module

    def _derive(self, name: str, build: Any) -> Any:
        with self._lock:
            if name not in self._derived:
                started = time.perf_counter()
                self._derived[name] = build()
                log.info("derived %s pipeline for %s in %.2fs", name, self.entry.alias, time.perf_counter() - started)
            return self._derived[name]

    def _load_preview_decoder(self, source: str) -> AutoencoderTiny:
        try:
            decoder = AutoencoderTiny.from_pretrained(source, **dtype_kwargs(self.dtype))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"cannot load preview_decoder '{source}' of model '{self.entry.alias}': {exc}"
            ) from exc
        return decoder.to(self.device).eval()

    def _load_upscaler(self, source: str) -> DiffusionPipeline:
        try:
            pipe = DiffusionPipeline.from_pretrained(source, **dtype_kwargs(self.dtype))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load upscaler '{source}' of model '{self.entry.alias}': {exc}") from exc
        return _quiet(pipe.to(self.device))


class ModelCache:
    """The models this process has loaded, at most ``max_loaded`` at once (least recently used leaves first),
    each with an embedding cache of at most ``embedding_cache_bytes``."""

    def __init__(
        self, device: torch.device, max_loaded: int = 2, embedding_cache_bytes: int = DEFAULT_EMBEDDING_CACHE_BYTES
    ) -> None:
        if max_loaded < 1:
            raise ConfigError(f"max_loaded must be at least 1 (got {max_loaded})")
        if embedding_cache_bytes < 0:
            raise ConfigError(f"the embedding cache size must be 0 or more (got {embedding_cache_bytes})")
        self.device = device
        self.max_loaded = max_loaded
        self.embedding_cache_bytes = embedding_cache_bytes
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, entry: ModelEntry) -> LoadedModel:
        with self._lock:
            loaded = self._models.get(entry.alias)
            if loaded is not None and loaded.entry == entry:
                self._models.move_to_end(entry.alias)
                return loaded
            while len(self._models) >= self.max_loaded:
                alias, evicted = self._models.popitem(last=False)
                log.info("unloading model %s to make room for %s", alias, entry.alias)
                del evicted
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
            loaded = load_model(entry, self.device)
            loaded.embeddings = EmbeddingCache(self.embedding_cache_bytes)
            self._models[entry.alias] = loaded
            return loaded

    @property
    def loaded(self) -> list[str]:
        return list(self._models)

    def load_times(self) -> dict[str, float]:
        """Seconds each loaded model took to load, by alias."""
        return {alias: model.load_seconds for alias, model in self._models.items()}


def load_model(entry: ModelEntry, device: torch.device) -> LoadedModel:
    """Load ``entry`` with diffusers' auto pipeline, then apply its scheduler and speed switches."""
    # Loading is logged with its duration; per-file progress bars would only clutter worker logs.
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    dtype = pick_dtype(entry, device)
    started = time.perf_counter()
    kwargs: dict[str, Any] = dtype_kwargs(dtype)
    if entry.revision:
        kwargs["revision"] = entry.revision
    if entry.variant:
        kwargs["variant"] = entry.variant
    components = _component_names(entry)
    if "safety_checker" in components and not entry.safety_checker:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    layout = "a folder in the diffusers layout (model_index.json, unet/, vae/, text_encoder/, tokenizer/)"
    if _looks_like_path(entry.source) and not Path(entry.source).is_dir():
        raise ModelLoadError(
            f"cannot load model '{entry.alias}': there is no folder at {entry.source}; point source at {layout}"
        )
    try:
        pipe = AutoPipelineForText2Image.from_pretrained(entry.source, **kwargs)
    except (OSError, ValueError) as exc:
        reason = str(exc).strip().rstrip(".")
        raise ModelLoadError(
            f"cannot load model '{entry.alias}' from {entry.source}: {reason}. Offline, set source to {layout}"
        ) from exc
    pipe = _quiet(pipe.to(device))
    _apply_scheduler(pipe, entry)
    _apply_speed_switches(pipe, entry)
    seconds = time.perf_counter() - started
    log.info("loaded model %s (%s) on %s as %s in %.2fs", entry.alias, entry.source, device, dtype, seconds)
    return LoadedModel(entry=entry, pipe=pipe, device=device, dtype=dtype, load_seconds=seconds)


def _looks_like_path(source: str) -> bool:
    """Hub ids are "owner/name"; anything absolute, relative to here or home, or with more parts is a path."""
    return source.startswith(("/", "./", "../", "~")) or source.count("/") > 1 or Path(source).exists()


def _component_names(entry: ModelEntry) -> set[str]:
    """The components named in the model's ``model_index.json`` (local folder or hub cache)."""
    try:
        config = DiffusionPipeline.load_config(entry.source, revision=entry.revision)
    except (OSError, ValueError):
        index = Path(entry.source) / "model_index.json"
        config = json.loads(index.read_text()) if index.exists() else {}
    return {name for name in config if not name.startswith("_")}


def _apply_scheduler(pipe: DiffusionPipeline, entry: ModelEntry) -> None:
    if entry.scheduler == "default":
        return
    if entry.family in _FLOW_MATCHING_FAMILIES:
        raise ConfigError(
            f"model '{entry.alias}': {entry.family} uses a flow-matching scheduler; set scheduler = \"default\""
        )
    scheduler_class, options = _SCHEDULERS[entry.scheduler]
    pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config, **options)


def _apply_speed_switches(pipe: DiffusionPipeline, entry: ModelEntry) -> None:
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    if entry.channels_last:
        for module in (denoiser, getattr(pipe, "vae", None)):
            if module is not None:
                module.to(memory_format=torch.channels_last)
    if entry.vae_tiling:
        pipe.vae.enable_tiling()
    if entry.fuse_qkv:
        for module in (denoiser, getattr(pipe, "vae", None)):
            if module is not None and hasattr(module, "fuse_qkv_projections"):
                module.fuse_qkv_projections()
    if entry.compile != "off":
        mode = None if entry.compile == "default" else entry.compile
        if denoiser is not None:
            # In place, so pipelines derived with from_pipe share the compiled module too.
            denoiser.compile(mode=mode)
        pipe.vae.decoder.compile(mode=mode)


def _quiet(pipe: Any) -> Any:
    """The engine reports progress itself; diffusers' own tqdm bars would only clutter worker logs."""
    pipe.set_progress_bar_config(disable=True)
    return pipe
