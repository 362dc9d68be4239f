"""The language of ``/imagine``: prompt text, image URLs, ``::`` weights, ``{}`` permutations, ``--`` parameters.

Torch-free and dependency-free: every front door and the engine parse with it.

Public surface:

- ``parse(text) -> ImagineRequest``: one prompt, validated. Raises ``PromptError`` on bad input.
- ``check_limits(request)``: the size limits a member's prompt must keep (``MAX_PROMPT_CHARS`` of text,
  ``MAX_PROMPT_PARTS`` ``::`` parts, ``MAX_IMAGE_URLS`` image prompts); ``parse`` applies them, and the job
  client applies them again to every request it admits, however it was made.
- ``expand_permutations(text, limit=40) -> list[str]``: ``a {red, green} bird`` -> two prompts.
- ``requests_of(text, limit=10) -> list[ImagineRequest]``: every job one /imagine starts ({…} and
  ``--repeat``), each checked before any runs.
- ``ImagineRequest``, ``WeightedPrompt``: immutable results; ``ImagineRequest.to_prompt()`` writes the
  canonical text back, so ``parse(req.to_prompt()) == req``.
- ``engine.errors.PromptError`` (a ValueError): ``.param`` is the canonical parameter at fault
  (``"--chaos"``, ``"--aspect"``, ...) or ``None`` when the prompt text itself is at fault; the message says
  what to fix.

Grammar, in the order it is applied:

1. ``{a, b}`` groups expand into separate prompts (``parse`` accepts a text that expands to one prompt).
2. An em or en dash before a word counts as ``--`` (phone keyboards turn ``--`` into ``—``).
3. Leading ``http(s)://`` tokens are image prompts; the text up to the first ``--name`` token is the
   prompt; everything after it is parameters, each taking the tokens up to the next ``--name``.
4. The prompt splits on ``::`` into weighted parts (``space::2 ship``).

Limits, each refused with a ``PromptError`` that names it: a text of at most ``MAX_PROMPT_CHARS`` characters
(as typed, before ``{…}`` expansion), at most ``MAX_IMAGE_URLS`` image URLs and ``MAX_PROMPT_PARTS`` ``::``
parts. Numbers are read only when their digits fit the parameter's range, so no value is too long to read.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from engine.errors import PromptError

__all__ = [
    "MAX_IMAGE_URLS",
    "MAX_JOBS_PER_PROMPT",
    "MAX_PROMPT_CHARS",
    "MAX_PROMPT_PARTS",
    "ImagineRequest",
    "WeightedPrompt",
    "check_limits",
    "expand_permutations",
    "given_parameters",
    "parse",
    "requests_of",
]

MAX_SEED = 4_294_967_295
QUALITY_VALUES = (0.25, 0.5, 1.0, 2.0)
MAX_ASPECT_RATIO = 4  # wider or taller than 4:1 is refused
MAX_ASPECT_SIDE = 10_000  # --ar 16:9 and 1920:1080 fit; a side of thousands of digits is refused, not read
MAX_BRACE_DEPTH = 8
MAX_PART_WEIGHT = 1000.0
MAX_JOBS_PER_PROMPT = 10  # jobs one /imagine may start; the bot's DREAMLOOM_BOT_MAX_JOBS_PER_COMMAND default
MAX_PROMPT_CHARS = 4000  # a prompt's text; Discord's /imagine option takes 1,800, plus a /settings suffix
MAX_PROMPT_PARTS = 10  # "::" parts: each is a text-encoder row, and the encoder takes them in one batch
MAX_IMAGE_URLS = 5  # image prompts: each is a download and a decoded image on a worker
_COUNT_SHOWN_UP_TO = 10_000  # permutation counts above this are reported as "more than"
_SHOWN_VALUE_CHARS = 40


@dataclass(frozen=True)
class WeightedPrompt:
    """One part of a ``::`` multi-prompt."""

    text: str
    weight: float = 1.0


@dataclass(frozen=True)
class ImagineRequest:
    """A parsed ``/imagine``: what to draw and every parameter, with MidJourney's defaults."""

    prompt: str
    parts: tuple[WeightedPrompt, ...]
    negative: str | None = None
    image_urls: tuple[str, ...] = ()
    aspect: tuple[int, int] = (1, 1)
    seed: int | None = None
    chaos: int = 0
    stylize: int = 100
    quality: float = 1.0
    stop: int = 100
    weird: int = 0
    tile: bool = False
    repeat: int = 1
    image_weight: float | None = None
    model: str | None = None
    style: str | None = None

    def to_prompt(self) -> str:
        """The canonical ``/imagine`` text for this request: image URLs, prompt, non-default parameters."""
        words = [*self.image_urls]
        if self.prompt:
            words.append(self.prompt)
        written: set[str] = set()  # --version and --niji share the `model` field: write it once
        for param in _PARAMS:
            value = getattr(self, param.field)
            if value != param.default and param.field not in written:
                words.append(param.write(value))
                written.add(param.field)
        return " ".join(words)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field, for job records and ``job.json`` recipes."""
        data = dataclasses.asdict(self)
        data["parts"] = [{"text": p.text, "weight": p.weight} for p in self.parts]
        data["image_urls"] = list(self.image_urls)
        data["aspect"] = list(self.aspect)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImagineRequest:
        """Rebuild a request stored with ``to_dict``; it is re-validated by parsing its canonical text."""
        try:
            request = cls(
                **{
                    **data,
                    "parts": tuple(WeightedPrompt(p["text"], float(p["weight"])) for p in data["parts"]),
                    "image_urls": tuple(data.get("image_urls", ())),
                    "aspect": tuple(data.get("aspect", (1, 1))),
                }
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PromptError(None, f"Not a stored imagine request: {exc}") from exc
        if _parse(request.to_prompt(), limits=False) != request:
            raise PromptError(None, "Stored imagine request does not match its own prompt text")
        return request


# --------------------------------------------------------------------------------------------------
# Parameters: one table row per parameter; the parser, the writer and docs/models.md read from it.


@dataclass(frozen=True)
class _Param:
    name: str  # canonical, e.g. "--chaos"
    aliases: tuple[str, ...]  # other accepted names, e.g. ("--c",)
    field: str  # the ImagineRequest field it sets
    allowed: str  # what the value must be, in words, completing "--chaos must be ..."
    read: Callable[[_Param, list[str], str], Any]  # (param, value tokens, name as typed) -> field value
    write: Callable[[Any], str]  # field value -> canonical text
    default: Any = None


def _refuse(param: _Param, typed: str, values: list[str]) -> PromptError:
    got = _shorten(" ".join(values) or "nothing")
    if typed != param.name:
        got = f"{typed} {got}"
    hint = "; parameters go after the prompt text" if len(values) > 1 and param.field != "negative" else ""
    return PromptError(param.name, f"{param.name} must be {param.allowed} (got {got}){hint}")


def _shorten(text: str) -> str:
    return text if len(text) <= _SHOWN_VALUE_CHARS else text[: _SHOWN_VALUE_CHARS - 1] + "…"


_WHOLE = re.compile(r"[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)
_VERSION = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3})?", re.ASCII)
_ASPECT = re.compile(r"([0-9]+):([0-9]+)", re.ASCII)


def _one_value(param: _Param, values: list[str], typed: str) -> str:
    if len(values) != 1:
        raise _refuse(param, typed, values)
    return values[0]


def _whole(low: int, high: int) -> Callable[[_Param, list[str], str], int]:
    def read(param: _Param, values: list[str], typed: str) -> int:
        value = _one_value(param, values, typed)
        # A value longer than the bound's digits is out of range; checking length first keeps int() cheap.
        if not _WHOLE.fullmatch(value) or len(value.lstrip("0")) > len(str(high)):
            raise _refuse(param, typed, values)
        number = int(value.lstrip("0") or "0")  # leading zeros count towards Python's int digit limit
        if not low <= number <= high:
            raise _refuse(param, typed, values)
        return number

    return read


def _decimal_in(low: float, high: float) -> Callable[[_Param, list[str], str], float]:
    def read(param: _Param, values: list[str], typed: str) -> float:
        value = _one_value(param, values, typed)
        if not _DECIMAL.fullmatch(value) or not low <= float(value) <= high:
            raise _refuse(param, typed, values)
        return float(value)

    return read


def _read_quality(param: _Param, values: list[str], typed: str) -> float:
    value = _one_value(param, values, typed)
    if not _DECIMAL.fullmatch(value) or float(value) not in QUALITY_VALUES:
        raise _refuse(param, typed, values)
    return float(value)


def _read_aspect(param: _Param, values: list[str], typed: str) -> tuple[int, int]:
    match = _ASPECT.fullmatch(_one_value(param, values, typed))
    if match is None or any(len(side.lstrip("0")) > len(str(MAX_ASPECT_SIDE)) for side in match.groups()):
        raise _refuse(param, typed, values)
    width, height = int(match[1].lstrip("0") or "0"), int(match[2].lstrip("0") or "0")
    if width > MAX_ASPECT_SIDE or height > MAX_ASPECT_SIDE:
        raise _refuse(param, typed, values)
    if width < 1 or height < 1 or not Fraction(1, MAX_ASPECT_RATIO) <= Fraction(width, height) <= MAX_ASPECT_RATIO:
        raise _refuse(param, typed, values)
    return width, height


def _read_flag(param: _Param, values: list[str], typed: str) -> bool:
    if values:
        raise _refuse(param, typed, values)
    return True


def _read_text(param: _Param, values: list[str], typed: str) -> str:
    if not values:
        raise _refuse(param, typed, values)
    return " ".join(values)


def _read_version(param: _Param, values: list[str], typed: str) -> str:
    value = _one_value(param, values, typed)
    if not _VERSION.fullmatch(value):
        raise _refuse(param, typed, values)
    return f"v{value}"


def _read_niji(param: _Param, values: list[str], typed: str) -> str:
    if not values:
        return "niji"
    if len(values) != 1 or not _VERSION.fullmatch(values[0]):
        raise _refuse(param, typed, values)
    return f"niji{values[0]}"


def _read_style(param: _Param, values: list[str], typed: str) -> str:
    if _one_value(param, values, typed).lower() != "raw":
        raise _refuse(param, typed, values)
    return "raw"


def _number_text(value: float) -> str:
    """A float as plain decimal digits that read back exactly: 0.25 -> "0.25", 1e-05 -> "0.00001", 2.0 -> "2"."""
    text = format(Decimal(repr(value)), "f")
    return text.removesuffix(".0")


def _write_model(value: str) -> str:
    if value.startswith("niji"):
        return f"--niji {value[4:]}".rstrip()
    return f"--version {value[1:]}"


# fmt: off
_PARAMS: tuple[_Param, ...] = (
    _Param("--aspect", ("--ar",), "aspect",
           f"two whole numbers W:H, each from 1 to {MAX_ASPECT_SIDE}, with a ratio between 1:4 and 4:1, such as 16:9",
           _read_aspect, lambda v: f"--ar {v[0]}:{v[1]}", (1, 1)),
    _Param("--chaos", ("--c",), "chaos", "a whole number from 0 to 100",
           _whole(0, 100), lambda v: f"--chaos {v}", 0),
    _Param("--stylize", ("--s",), "stylize", "a whole number from 0 to 1000",
           _whole(0, 1000), lambda v: f"--stylize {v}", 100),
    _Param("--quality", ("--q",), "quality", "one of .25, .5, 1, 2",
           _read_quality, lambda v: f"--quality {_number_text(v)}", 1.0),
    _Param("--seed", (), "seed", f"a whole number from 0 to {MAX_SEED}",
           _whole(0, MAX_SEED), lambda v: f"--seed {v}", None),
    _Param("--stop", (), "stop", "a whole number from 10 to 100",
           _whole(10, 100), lambda v: f"--stop {v}", 100),
    _Param("--weird", ("--w",), "weird", "a whole number from 0 to 3000",
           _whole(0, 3000), lambda v: f"--weird {v}", 0),
    _Param("--tile", (), "tile", "given alone, with no value",
           _read_flag, lambda v: "--tile", False),
    _Param("--repeat", ("--r",), "repeat", "a whole number from 1 to 40",
           _whole(1, 40), lambda v: f"--repeat {v}", 1),
    _Param("--iw", (), "image_weight", "a number from 0 to 3",
           _decimal_in(0.0, 3.0), lambda v: f"--iw {_number_text(v)}", None),
    _Param("--no", (), "negative", "followed by what to leave out, such as --no people, cars",
           _read_text, lambda v: f"--no {v}", None),
    _Param("--version", ("--v",), "model", "a model version such as 6 or 5.2",
           _read_version, _write_model, None),
    _Param("--niji", (), "model", "given alone or with a version such as 6",
           _read_niji, _write_model, None),
    _Param("--style", (), "style", "raw",
           _read_style, lambda v: f"--style {v}", None),
)
# fmt: on
_PARAMS_BY_NAME: dict[str, _Param] = {n: p for p in _PARAMS for n in (p.name, *p.aliases)}


def parameter_names() -> list[str]:
    """Every accepted parameter name with its aliases, e.g. ``--aspect (--ar)``, for help texts."""
    return [f"{p.name} ({', '.join(p.aliases)})" if p.aliases else p.name for p in _PARAMS]


# --------------------------------------------------------------------------------------------------
# parse()

_DASH_PARAM = re.compile(r"(?<!\S)[\u2014\u2013]{1,2}(?=[^\W\d_])")  # em or en dash + word -> "--word"
_PARAM_TOKEN = re.compile(r"--[^\W\d_]")  # "--" then a letter: the start of a parameter
_URL = re.compile(r"<?(https?://[^\s<>]+)>?", re.IGNORECASE)
_PART_WEIGHT = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)  # right after "::"


def parse(text: str) -> ImagineRequest:
    """Parse one ``/imagine`` text into a validated request, or raise ``PromptError`` saying what to fix."""
    return _parse(text, limits=True)


def _parse(text: str, *, limits: bool) -> ImagineRequest:
    """``parse``; ``limits=False`` reads back a stored request admitted before a limit was lowered."""
    if limits:
        _check_length(len(text))
    if "{" in text or "}" in text:
        variants = expand_permutations(text)
        if len(variants) > 1:
            raise PromptError(
                None,
                f"This prompt has {{…}} options that make {len(variants)} prompts; "
                "expand it with expand_permutations() and run each one",
            )
        text = variants[0]
    text = _DASH_PARAM.sub("--", text)

    tokens = text.split()
    first_param = next((i for i, t in enumerate(tokens) if _PARAM_TOKEN.match(t)), len(tokens))
    head, tail = tokens[:first_param], tokens[first_param:]

    image_urls: list[str] = []
    while head and (url := _URL.fullmatch(head[0])):
        image_urls.append(url[1])
        head.pop(0)
    if limits:
        _check_image_urls(len(image_urls))
    prompt = " ".join(head)
    fields = _read_parameters(tail)
    parts = _split_weighted(prompt)
    if not parts and not image_urls:
        raise PromptError(
            None, "The prompt is empty: describe the image before the parameters, e.g. 'a lighthouse --ar 16:9'"
        )
    request = ImagineRequest(prompt=prompt, parts=parts, image_urls=tuple(image_urls), **fields)
    if limits:
        check_limits(request)
    return request


def check_limits(request: ImagineRequest) -> None:
    """Raise ``PromptError`` when ``request`` is larger than a member's prompt may be: more than
    ``MAX_PROMPT_CHARS`` characters of text (image URLs, prompt and --no text), ``MAX_PROMPT_PARTS`` ``::``
    parts or ``MAX_IMAGE_URLS`` image URLs. ``parse`` checks these; the job client checks every request it
    admits, so a request built in code, or read back from storage, keeps them too."""
    _check_image_urls(len(request.image_urls))
    _check_parts(len(request.parts))
    _check_length(len(" ".join([*request.image_urls, request.prompt, request.negative or ""]).strip()))


def _check_length(chars: int) -> None:
    if chars > MAX_PROMPT_CHARS:
        raise PromptError(
            None, f"The prompt is {chars:,} characters long; the limit is {MAX_PROMPT_CHARS:,} characters, shorten it"
        )


def _check_image_urls(count: int) -> None:
    if count > MAX_IMAGE_URLS:
        raise PromptError(
            None, f"The prompt starts with {count} image URLs; the limit is {MAX_IMAGE_URLS}, remove some"
        )


def _check_parts(count: int) -> None:
    if count > MAX_PROMPT_PARTS:
        raise PromptError(
            None, f"The prompt has {count} '::' parts; the limit is {MAX_PROMPT_PARTS} parts, join or remove some"
        )


def given_parameters(text: str) -> set[str]:
    """The canonical names of the parameters ``text`` gives (``--ar`` counts as ``--aspect``), without
    validating anything: for adding a user's defaults only where the prompt says nothing."""
    tokens = _DASH_PARAM.sub("--", text).split()
    return {param.name for typed, _ in _group_parameters(tokens) if (param := _PARAMS_BY_NAME.get(typed))}


def _read_parameters(tokens: list[str]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    seen: dict[str, tuple[_Param, str]] = {}  # field -> the parameter that set it, and its text as given
    for typed, values in _group_parameters(tokens):
        param = _PARAMS_BY_NAME.get(typed)
        if param is None:
            raise _unknown_parameter(typed)
        given = _shorten(" ".join([typed, *values]))
        if param.field in seen:
            first, first_given = seen[param.field]
            if first is param:
                raise PromptError(param.name, f"{param.name} is given twice ({first_given}, then {given}); keep one")
            raise PromptError(
                param.name,
                f"{first.name} and {param.name} both choose the {param.field} ({first_given}, {given}); keep one",
            )
        seen[param.field] = (param, given)
        fields[param.field] = param.read(param, values, typed)
    return fields


def _group_parameters(tokens: list[str]) -> Iterator[tuple[str, list[str]]]:
    """``["--ar", "16:9", "--tile"]`` -> ``("--ar", ["16:9"]), ("--tile", [])``; names lower-cased."""
    name: str | None = None
    values: list[str] = []
    for token in tokens:
        if _PARAM_TOKEN.match(token):
            if name is not None:
                yield name, values
            name, values = token.lower(), []
        else:
            values.append(token)
    if name is not None:
        yield name, values


def _unknown_parameter(typed: str) -> PromptError:
    close = difflib.get_close_matches(typed, list(_PARAMS_BY_NAME), n=1, cutoff=0.75)
    hint = f"did you mean {_PARAMS_BY_NAME[close[0]].name}? " if close else ""
    shown = _shorten(typed)
    return PromptError(shown, f"Unknown parameter {shown}: {hint}known parameters are {', '.join(parameter_names())}")


def _split_weighted(prompt: str) -> tuple[WeightedPrompt, ...]:
    """``space::2 ship`` -> ``(space, 2.0), (ship, 1.0)``; a weight follows the ``::`` after its text."""
    pieces = prompt.split("::")
    parts: list[tuple[str, float, str]] = []  # (text, weight, the weight as written)
    text = pieces[0]
    for piece in pieces[1:]:
        match = _PART_WEIGHT.match(piece)
        written = f"::{match[0]}" if match else "::"
        parts.append((text, float(match[0]) if match else 1.0, written))
        text = piece[match.end() :] if match else piece
    parts.append((text, 1.0, ""))

    result: list[WeightedPrompt] = []
    for index, (text, weight, written) in enumerate(parts):
        text = " ".join(text.split())
        last = index == len(parts) - 1
        if not text:
            if last:
                continue  # "cat::2" ends with the weight
            raise PromptError(None, f"Each '::' weight needs text before it; '{written}' has none")
        if abs(weight) > MAX_PART_WEIGHT:
            raise PromptError(
                None,
                f"Multi-prompt weights must be between -{MAX_PART_WEIGHT:g} and {MAX_PART_WEIGHT:g} "
                f"(got {_shorten(written)})",
            )
        result.append(WeightedPrompt(text, weight))
    total = math.fsum(part.weight for part in result)
    if result and total <= 0:
        raise PromptError(
            None, f"Multi-prompt weights must add up to more than 0 (they add up to {total:g}); raise a weight"
        )
    return tuple(result)


# --------------------------------------------------------------------------------------------------
# expand_permutations()

# A tree of the text: a sequence holds strings and groups; a group holds one sequence per option.
_Seq = list["str | _Group"]


@dataclass
class _Group:
    options: list[_Seq]
    opened_at: int


def expand_permutations(text: str, limit: int = 40) -> list[str]:
    """Expand ``{a, b}`` groups into separate prompts, in order: ``a {red, green} bird`` -> two prompts.

    Groups may nest and may stand anywhere, parameters included (``--ar {1:1, 16:9}``); inside braces
    ``\\,`` is a literal comma. Raises ``PromptError`` for unbalanced braces or more than ``limit`` prompts.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1 (got {limit})")
    _check_length(len(text))
    tree = _parse_braces(text)
    cap = max(limit + 1, _COUNT_SHOWN_UP_TO)
    count = _count(tree, cap)
    if count > limit:
        made = f"{count}" if count < cap else f"more than {cap - 1}"
        raise PromptError(
            None, f"This prompt's {{…}} options make {made} prompts; the limit is {limit}, use fewer options"
        )
    return [" ".join(variant.split()) for variant in _expand(tree)]


def requests_of(text: str, limit: int = MAX_JOBS_PER_PROMPT) -> list[ImagineRequest]:
    """Every job one /imagine text starts: one per prompt of its ``{…}`` permutations, times its ``--repeat``.
    Each is parsed before any is returned, so a bad one stops them all. Raises ``PromptError``."""
    requests = [parse(prompt) for prompt in expand_permutations(text)]
    jobs = [request for request in requests for _ in range(request.repeat)]
    if len(jobs) > limit:
        raise PromptError(None, f"This prompt makes {len(jobs)} jobs ({{…}} and --repeat); at most {limit} at once")
    return jobs


def _parse_braces(text: str) -> _Seq:
    root: _Seq = []
    stack: list[_Group] = []  # groups still open, innermost last
    current = root
    chunk: list[str] = []

    def flush() -> None:
        if chunk:
            current.append("".join(chunk))
            chunk.clear()

    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and stack and text.startswith("\\,", index):
            chunk.append(",")
            index += 1
        elif char == "{":
            if len(stack) == MAX_BRACE_DEPTH:
                raise PromptError(None, f"Braces nest more than {MAX_BRACE_DEPTH} deep at character {index + 1}")
            flush()
            group = _Group([[]], index)
            current.append(group)
            stack.append(group)
            current = group.options[0]
        elif char == "}":
            if not stack:
                raise PromptError(None, f"Unbalanced braces: the '}}' at character {index + 1} closes nothing")
            flush()
            stack.pop()
            current = stack[-1].options[-1] if stack else root
        elif char == "," and stack:
            flush()
            stack[-1].options.append([])
            current = stack[-1].options[-1]
        else:
            chunk.append(char)
        index += 1
    if stack:
        raise PromptError(None, f"Unbalanced braces: the '{{' at character {stack[-1].opened_at + 1} is never closed")
    flush()
    return root


def _count(seq: _Seq, cap: int) -> int:
    """How many prompts ``seq`` makes, saturating at ``cap`` so huge products stay cheap."""
    total = 1
    for item in seq:
        if isinstance(item, _Group):
            total = min(cap, total * min(cap, sum(_count(option, cap) for option in item.options)))
    return total


def _expand(seq: _Seq) -> list[str]:
    variants = [""]
    for item in seq:
        if isinstance(item, str):
            variants = [v + item for v in variants]
        else:
            options = [o.strip() for option in item.options for o in _expand(option)]
            variants = [v + o for v in variants for o in options]
    return variants
