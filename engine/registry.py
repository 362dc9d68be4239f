"""The model registry: named entries (``v6``, ``niji``, ``turbo`` ...) that say which diffusers model to load and how.

Torch-free, so the bot can validate ``--v``/``--niji`` and show sizes without loading anything.

Sources, first match wins:

- ``DREAMLOOM_MODELS=/path/models.toml``: a file of entries (format below);
- ``DREAMLOOM_MODEL=stabilityai/sd-turbo`` (a hub id or a local folder): one entry, alias ``default``, its
  family guessed from the name unless ``DREAMLOOM_MODEL_FAMILY`` says it;
- nothing: the built-in demo model (``engine/models/demo``, alias ``demo``), which needs no download: a tiny
  model trained here on a synthetic world of coloured shapes (see ``devtools.demo``).

``models.toml``::

    default = "v6"                       # the server default; the first entry when omitted

    [models.v6]
    source = "stabilityai/stable-diffusion-xl-base-1.0"
    family = "sdxl"                      # fills native_size, steps, guidance (see FAMILIES)
    aliases = ["6"]                      # extra names for --v / --niji
    scheduler = "euler"                  # default (the model's own), or one of SCHEDULERS
    dtype = "auto"                       # auto (fp16/bf16 on CUDA, fp32 on CPU), fp16, bf16, fp32
    compile = "off"                      # torch.compile the UNet/transformer and the VAE decoder: off, default,
                                         # reduce-overhead (CUDA graphs), max-autotune, max-autotune-no-cudagraphs
    fuse_qkv = false                     # fuse attention's query/key/value projections into one matmul
    channels_last = false
    vae_tiling = false                   # decode large images in tiles
    example = "a lighthouse at dusk --ar 16:9"  # a prompt that shows what it draws (the page's placeholder, hints)
    preview_decoder = "madebyollin/taesdxl"   # optional tiny autoencoder for live previews
    upscaler = "stabilityai/stable-diffusion-x4-upscaler"  # optional super-resolution pipeline
    variation_strength = [0.35, 0.7]     # Vary (Subtle), Vary (Strong)
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, PromptError, UnknownModel
from engine.plan import ModelProfile
from engine.prompt import ImagineRequest

__all__ = ["DEMO_ALIAS", "FAMILIES", "SCHEDULERS", "Family", "ModelEntry", "ModelNotice", "Registry"]


@dataclass(frozen=True)
class Family:
    """Defaults shared by every model of one architecture."""

    native_size: tuple[int, int]
    steps: int
    guidance: float
    size_multiple: int = 64
    preview_factors: str = "sd"  # which latent-to-RGB approximation previews use (engine.previews)
    example: str = "a lighthouse at dusk --ar 16:9"  # a prompt that shows what such a model draws
    # --tile wraps the denoiser's padded convolutions around; a transformer (SD3, FLUX) has none to wrap, and its
    # attention and position embeddings see the picture's edges as edges, so its pictures would not tile.
    tiles: bool = True
    negative_prompt: bool = True  # False: guidance distilled into the model (FLUX.1), --no is the embedding push


FAMILIES: dict[str, Family] = {
    "sd15": Family((512, 512), 30, 7.5),
    "sd2-base": Family((512, 512), 30, 7.5),
    "sd2": Family((768, 768), 30, 7.5),
    "sd-turbo": Family((512, 512), 1, 0.0),
    "sdxl": Family((1024, 1024), 30, 5.0, preview_factors="sdxl"),
    "sdxl-turbo": Family((512, 512), 1, 0.0, preview_factors="sdxl"),
    "sd3": Family((1024, 1024), 28, 7.0, size_multiple=16, preview_factors="sd3", tiles=False),
    "flux": Family((1024, 1024), 28, 3.5, size_multiple=16, preview_factors="flux", tiles=False,
                   negative_prompt=False),
    # dreamloom's own tiny model (engine/models/demo): 64x64 pictures of a synthetic world of shapes.
    "demo": Family((64, 64), 20, 4.0, size_multiple=16, preview_factors="demo",
                   example="a large red circle in the top left on a blue background"),
}  # fmt: skip
DEMO_MODEL = Path(__file__).resolve().parent / "models" / "demo"
DEMO_ALIAS = "demo"
HOW_TO_CONFIGURE = (
    "For real pictures, set DREAMLOOM_MODEL=stabilityai/sd-turbo (a hub id or a local diffusers folder; "
    "DREAMLOOM_MODELS=models.toml for several) and restart."
)

SCHEDULERS = ("default", "euler", "euler-a", "dpm++2m", "dpm++2m-karras", "ddim", "unipc")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
DTYPES = ("auto", "fp16", "bf16", "fp32")
_ALIAS = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")


@dataclass(frozen=True)
class ModelEntry:
    """One model the server offers."""

    alias: str
    source: str  # a hub id ("stabilityai/sd-turbo") or a local folder in the diffusers layout
    family: str
    native_size: tuple[int, int]
    steps: int
    guidance: float
    size_multiple: int = 64
    aliases: tuple[str, ...] = ()
    revision: str | None = None
    variant: str | None = None
    scheduler: str = "default"
    dtype: str = "auto"
    compile: str = "off"
    fuse_qkv: bool = False
    channels_last: bool = False
    vae_tiling: bool = False
    preview_decoder: str | None = None
    upscaler: str | None = None
    safety_checker: bool = False
    style_prompt: str | None = None
    variation_strength: tuple[float, float] = (0.35, 0.7)
    description: str = ""
    example: str = ""  # a prompt that shows what it draws; empty: its family's

    @property
    def names(self) -> tuple[str, ...]:
        return (self.alias, *self.aliases)

    @property
    def profile(self) -> ModelProfile:
        return ModelProfile(
            native_size=self.native_size,
            steps=self.steps,
            guidance=self.guidance,
            size_multiple=self.size_multiple,
            style_prompt=self.style_prompt,
            negative_prompt=FAMILIES[self.family].negative_prompt,
        )

    @property
    def preview_factors(self) -> str:
        return FAMILIES[self.family].preview_factors

    def check_supported(self, request: ImagineRequest) -> None:
        """Raise ``PromptError`` naming a parameter this model cannot honour. Torch-free, so a front door can
        refuse before a job exists; the engine checks again before it renders."""
        if request.tile and not FAMILIES[self.family].tiles:
            raise PromptError(
                "--tile",
                f"--tile is not available on model '{self.alias}' ({self.family}): its transformer has no "
                "convolutions to wrap around, so its pictures cannot be made to tile; pick a Stable Diffusion "
                "or SDXL model with --v for seamless patterns",
            )

    @classmethod
    def build(cls, alias: str, settings: Mapping[str, Any], where: str) -> ModelEntry:
        """An entry from a TOML table or the environment; ``where`` names the place for error messages."""
        known = {f.name for f in fields(cls)} - {"alias"}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ConfigError(
                f"{where}: unknown setting {', '.join(unknown)}; known settings are {', '.join(sorted(known))}"
            )
        if not _ALIAS.fullmatch(alias):
            raise ConfigError(f"{where}: alias '{alias}' must be 1-32 lower-case letters, digits, '.', '_' or '-'")
        if "source" not in settings:
            raise ConfigError(
                f"{where}: 'source' is required (a hub id such as stabilityai/sd-turbo, or a local folder)"
            )
        family_name = settings.get("family", "sd15")
        if family_name not in FAMILIES:
            raise ConfigError(f"{where}: family '{family_name}' is not one of {', '.join(FAMILIES)}")
        family = FAMILIES[family_name]
        values: dict[str, Any] = {
            "native_size": family.native_size,
            "steps": family.steps,
            "guidance": family.guidance,
            "size_multiple": family.size_multiple,
            "example": family.example,
            **settings,
            "family": family_name,
        }
        for name in ("native_size", "aliases", "variation_strength"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        if isinstance(values.get("compile"), bool):  # compile = true/false reads as default/off
            values["compile"] = "default" if values["compile"] else "off"
        try:
            entry = cls(alias=alias, **values)
            entry._check(where)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        return entry

    def _check(self, where: str) -> None:
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"{where}: scheduler '{self.scheduler}' is not one of {', '.join(SCHEDULERS)}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"{where}: dtype '{self.dtype}' is not one of {', '.join(DTYPES)}")
        if self.compile not in COMPILE_MODES:
            raise ConfigError(f"{where}: compile '{self.compile}' is not one of {', '.join(COMPILE_MODES)}")
        subtle, strong = self.variation_strength
        if not 0 < subtle <= 1 or not 0 < strong <= 1:
            raise ConfigError(f"{where}: variation_strength values must be in (0, 1] (got {self.variation_strength})")
        for alias in self.aliases:
            if not _ALIAS.fullmatch(alias):
                raise ConfigError(f"{where}: alias '{alias}' must be 1-32 lower-case letters, digits, '.', '_' or '-'")
        self.profile  # noqa: B018 - validates native size, steps and guidance


@dataclass(frozen=True)
class ModelNotice:
    """A plain statement about the default model, shown above the playground and after CLI jobs."""

    kind: str  # "demo": a CSS class of the playground's notice
    title: str
    text: str

    def __str__(self) -> str:
        return f"{self.title}: {self.text}"

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "title": self.title, "text": self.text}


@dataclass(frozen=True)
class Registry:
    """The server's models by alias, and which one a request without --v/--niji gets."""

    entries: tuple[ModelEntry, ...] = ()
    default: str | None = None
    _by_name: dict[str, ModelEntry] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, ModelEntry] = {}
        for entry in self.entries:
            for name in entry.names:
                if name in by_name:
                    raise ConfigError(f"model alias '{name}' is used by both {by_name[name].alias} and {entry.alias}")
                by_name[name] = entry
        if self.default is not None and self.default not in by_name:
            raise ConfigError(f"the default model '{self.default}' is not an entry; entries are {', '.join(by_name)}")
        object.__setattr__(self, "_by_name", by_name)

    @property
    def aliases(self) -> list[str]:
        return list(self._by_name)

    @property
    def example(self) -> str:
        """A prompt that shows what the default model draws (for placeholders, welcome text and hints)."""
        return self.resolve(None).example if self.entries else "a lighthouse at dusk --ar 16:9"

    @property
    def notice(self) -> ModelNotice | None:
        """What to tell people about the default model: with nothing configured, that the built-in demo model
        only knows coloured shapes, and how to configure a real one. None for a configured model."""
        if not self.entries or self.resolve(None).source != str(DEMO_MODEL):
            return None
        return ModelNotice(
            "demo",
            "Built-in demo model",
            f"a small model that only knows simple coloured shapes on backgrounds (try “{self.example}”). "
            + HOW_TO_CONFIGURE,
        )

    def resolve(self, name: str | None) -> ModelEntry:
        """The entry for a request's ``model`` (``"v6"``, ``"niji"``...), or the default for None."""
        if name is None:
            if not self.entries:
                raise UnknownModel("default", [])
            return self._by_name[self.default] if self.default else self.entries[0]
        candidates = [name, name.removeprefix("v")] if name.startswith("v") else [name]
        for candidate in candidates:
            if candidate in self._by_name:
                return self._by_name[candidate]
        raise UnknownModel(name, self.aliases)

    @classmethod
    def from_toml(cls, path: str | Path) -> Registry:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read the model registry {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
        return cls.from_mapping(data, where=str(path))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "model registry") -> Registry:
        unknown = sorted(set(data) - {"default", "models"})
        if unknown:
            raise ConfigError(f"{where}: unknown top-level key {', '.join(unknown)}; expected 'default' and [models.*]")
        models = data.get("models", {})
        if not isinstance(models, Mapping) or not models:
            raise ConfigError(f"{where}: no [models.<alias>] tables")
        entries = []
        for alias, settings in models.items():
            if not isinstance(settings, Mapping):
                raise ConfigError(f"{where}: models.{alias} must be a table")
            entries.append(ModelEntry.build(alias, settings, f"{where}: [models.{alias}]"))
        return cls(tuple(entries), data.get("default"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Registry:
        env = os.environ if environ is None else environ
        if path := env.get("DREAMLOOM_MODELS"):
            return cls.from_toml(path)
        if source := env.get("DREAMLOOM_MODEL"):
            family = env.get("DREAMLOOM_MODEL_FAMILY") or guess_family(source)
            entry = ModelEntry.build("default", {"source": source, "family": family}, "DREAMLOOM_MODEL")
            return cls((entry,), "default")
        demo = ModelEntry.build(
            DEMO_ALIAS,
            {"source": str(DEMO_MODEL), "family": "demo", "description": "the built-in demo model (shapes)"},
            "the built-in demo model",
        )
        return cls((demo,), "demo")


def guess_family(source: str) -> str:
    """A family from a model's name, for the one-variable set-up: ``stabilityai/sdxl-turbo`` -> ``sdxl-turbo``."""
    name = source.lower()
    rules = [
        ("flux", "flux"),
        ("stable-diffusion-3", "sd3"),
        ("sd3", "sd3"),
        ("sdxl-turbo", "sdxl-turbo"),
        ("sd-turbo", "sd-turbo"),
        ("xl", "sdxl"),
        ("2-1-base", "sd2-base"),
        ("2-base", "sd2-base"),
        ("stable-diffusion-2", "sd2"),
    ]
    return next((family for needle, family in rules if needle in name), "sd15")
