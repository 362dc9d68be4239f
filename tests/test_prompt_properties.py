"""Property tests: parse never crashes, and whatever it accepts is within every documented range."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.errors import PromptError
from engine.prompt import ImagineRequest, expand_permutations, parse

# Random texts per property and run. 3000 took 36 s of the suite's eight minutes on two cores; each run still
# draws new ones, and the explicit @example cases always run.
EXAMPLES = 1500

NAMES = ["ar", "aspect", "c", "chaos", "s", "stylize", "q", "quality", "seed", "stop", "w", "weird", "tile",
         "r", "repeat", "iw", "no", "v", "version", "niji", "style", "AR", "Seed", "hd", "x"]  # fmt: skip
VALUES = st.one_of(
    st.integers(-10, 5000).map(str),
    st.sampled_from(["4294967295", "4294967296", ".25", ".5", "0.5", "2", "1.5", "3.01", "raw", "RAW", "6", "5.2",
                     "16:9", "1:4", "4:1", "5:1", "1:5", "0:1", "1.78:1", "9" * 30, "nan", "inf", "", "::", "{", "}"]),
    st.from_regex(r"[0-9]{1,3}:[0-9]{1,3}", fullmatch=True),
    st.text(max_size=6),
)  # fmt: skip
WORDS = st.one_of(
    st.sampled_from(["a", "lighthouse", "at", "dusk", "::", "::2", "::-0.5", "::.5", "{red, green}", "\\,", "{", "}",
                     "https://example.com/a.png", "<http://x.y/z.jpg>", "\u2014", "--", "\u2013ar"]),
    st.text(max_size=8),
)  # fmt: skip
DASHES = st.sampled_from(["--", "\u2014", "\u2013", "\u2014\u2014", "-"])


@st.composite
def prompt_like(draw: st.DrawFn) -> str:
    """Text shaped like a real /imagine: words, then parameters with plausible and implausible values."""
    words = draw(st.lists(WORDS, max_size=8))
    params = draw(st.lists(st.tuples(DASHES, st.sampled_from(NAMES), st.lists(VALUES, max_size=3)), max_size=6))
    tokens = [*words]
    for dash, name, values in params:
        tokens += [dash + name, *values]
    return draw(st.sampled_from([" ", "  ", "\n"])).join(tokens)


def assert_within_ranges(request: ImagineRequest) -> None:
    assert isinstance(request, ImagineRequest)
    assert request.prompt == " ".join(request.prompt.split())
    assert request.prompt or request.image_urls, "an empty prompt must be refused"
    assert all(url.lower().startswith(("http://", "https://")) for url in request.image_urls)
    width, height = request.aspect
    assert width >= 1
    assert height >= 1
    assert Fraction(1, 4) <= Fraction(width, height) <= 4
    assert request.seed is None or 0 <= request.seed <= 4_294_967_295
    assert 0 <= request.chaos <= 100
    assert 0 <= request.stylize <= 1000
    assert request.quality in (0.25, 0.5, 1.0, 2.0)
    assert 10 <= request.stop <= 100
    assert 0 <= request.weird <= 3000
    assert 1 <= request.repeat <= 40
    assert request.image_weight is None or 0 <= request.image_weight <= 3
    assert request.model is None or request.model.startswith(("v", "niji"))
    assert request.style in (None, "raw")
    assert request.negative is None or request.negative.strip()
    assert all(part.text and math.isfinite(part.weight) for part in request.parts)
    assert not request.parts or math.fsum(part.weight for part in request.parts) > 0
    # Whatever is accepted can be written back and reads the same.
    assert parse(request.to_prompt()) == request


def check(text: str) -> None:
    try:
        request = parse(text)
    except PromptError as caught:
        error = caught
    else:
        assert_within_ranges(request)
        return
    assert str(error), "a refusal must say why"
    assert error.param is None or error.param.startswith("--")
    if error.param is not None:
        assert error.param in str(error), "a refusal must name the parameter at fault"


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.text())
@example("a lighthouse at dusk --ar 16:9 --seed 7 --no people")
@example("\u2014ar 1:1")
@example("{" * 50 + "}" * 50)
def test_parse_any_text(text: str) -> None:
    check(text)


@pytest.mark.slow
@settings(max_examples=EXAMPLES, deadline=None)
@given(prompt_like())
def test_parse_prompt_like_text(text: str) -> None:
    check(text)


@pytest.mark.slow
@settings(max_examples=EXAMPLES, deadline=None)
@given(st.one_of(prompt_like(), st.text()), st.integers(1, 50))
def test_expand_permutations_any_text(text: str, limit: int) -> None:
    try:
        variants = expand_permutations(text, limit)
    except PromptError as caught:
        error = caught
    else:
        assert 1 <= len(variants) <= limit
        assert all(isinstance(v, str) and v == " ".join(v.split()) for v in variants)
        return
    assert error.param is None
    assert str(error)
