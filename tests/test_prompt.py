"""The /imagine prompt language: every rule of issue 2, and a test per error kind."""

from __future__ import annotations

import pickle

import pytest

from engine.errors import PromptError
from engine.prompt import ImagineRequest, WeightedPrompt, expand_permutations, given_parameters, parse


def refused(text: str) -> PromptError:
    with pytest.raises(PromptError) as caught:
        parse(text)
    return caught.value


# --- the prompt text ------------------------------------------------------------------------------


def test_plain_prompt_gets_every_default():
    request = parse("a lighthouse at dusk")
    assert request == ImagineRequest(
        prompt="a lighthouse at dusk",
        parts=(WeightedPrompt("a lighthouse at dusk", 1.0),),
        negative=None,
        image_urls=(),
    )
    assert (request.aspect, request.seed, request.chaos, request.stylize) == ((1, 1), None, 0, 100)
    assert (request.quality, request.stop, request.weird, request.tile, request.repeat) == (1.0, 100, 0, False, 1)
    assert (request.image_weight, request.model, request.style) == (None, None, None)


def test_whitespace_is_collapsed_and_parameters_removed():
    request = parse("  a   lighthouse\n\tat dusk   --ar 16:9  ")
    assert request.prompt == "a lighthouse at dusk"
    assert request.aspect == (16, 9)


def test_request_is_immutable():
    request = parse("a cat")
    with pytest.raises(AttributeError):
        request.prompt = "a dog"  # type: ignore[misc]


def test_leading_image_urls_are_image_prompts():
    request = parse("https://example.com/a.png <HTTP://example.org/b.jpg> a cat in the style of https://x.y/z")
    assert request.image_urls == ("https://example.com/a.png", "HTTP://example.org/b.jpg")
    assert request.prompt == "a cat in the style of https://x.y/z"  # only leading URLs are image prompts


def test_an_image_url_alone_is_a_prompt():
    request = parse("https://example.com/a.png --iw 2")
    assert (request.prompt, request.parts, request.image_weight) == ("", (), 2.0)


# --- parameters -----------------------------------------------------------------------------------


def test_the_issue_example():
    request = parse("a lighthouse at dusk --ar 16:9 --seed 7 --no people")
    assert (request.prompt, request.aspect, request.seed, request.negative) == (
        "a lighthouse at dusk",
        (16, 9),
        7,
        "people",
    )


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        ("x --ar 16:9", "aspect", (16, 9)),
        ("x --aspect 2:3", "aspect", (2, 3)),
        ("x --ar 4:1", "aspect", (4, 1)),
        ("x --ar 1:4", "aspect", (1, 4)),
        ("x --c 40", "chaos", 40),
        ("x --chaos 100", "chaos", 100),
        ("x --s 0", "stylize", 0),
        ("x --stylize 1000", "stylize", 1000),
        ("x --q .25", "quality", 0.25),
        ("x --quality 0.5", "quality", 0.5),
        ("x --q 2", "quality", 2.0),
        ("x --seed 0", "seed", 0),
        ("x --seed 4294967295", "seed", 4294967295),
        ("x --stop 10", "stop", 10),
        ("x --w 3000", "weird", 3000),
        ("x --weird 0", "weird", 0),
        ("x --tile", "tile", True),
        ("x --r 40", "repeat", 40),
        ("x --repeat 1", "repeat", 1),
        ("https://a.b/c.png x --iw 0", "image_weight", 0.0),
        ("https://a.b/c.png x --iw 2.5", "image_weight", 2.5),
        ("x --v 6", "model", "v6"),
        ("x --version 5.2", "model", "v5.2"),
        ("x --niji", "model", "niji"),
        ("x --niji 6", "model", "niji6"),
        ("x --style raw", "style", "raw"),
        ("x --style RAW", "style", "raw"),
        ("x --AR 3:2", "aspect", (3, 2)),
    ],
)
def test_each_parameter_and_alias(text, field, value):
    assert getattr(parse(text), field) == value


@pytest.mark.parametrize("dash", ["\u2014", "\u2013"])
def test_em_and_en_dash_count_as_double_hyphen(dash):
    request = parse(f"a lighthouse {dash}ar 16:9 {dash}seed 7")
    assert (request.prompt, request.aspect, request.seed) == ("a lighthouse", (16, 9), 7)


def test_a_dash_inside_a_word_is_text():
    assert parse("a red\u2014blue bird").prompt == "a red\u2014blue bird"


def test_no_takes_everything_up_to_the_next_parameter():
    request = parse("a street --no people, cars,  red   trees --ar 2:1")
    assert request.negative == "people, cars, red trees"
    assert request.aspect == (2, 1)


# --- multi-prompts --------------------------------------------------------------------------------


def test_multi_prompt_weights():
    assert parse("space::2 ship").parts == (WeightedPrompt("space", 2.0), WeightedPrompt("ship", 1.0))
    assert parse("hot:: dog").parts == (WeightedPrompt("hot", 1.0), WeightedPrompt("dog", 1.0))
    assert parse("still life painting:: fruit::-0.5").parts == (
        WeightedPrompt("still life painting", 1.0),
        WeightedPrompt("fruit", -0.5),
    )
    assert parse("a::.5 b::1.5").parts == (WeightedPrompt("a", 0.5), WeightedPrompt("b", 1.5))


def test_a_weight_must_touch_its_double_colon():
    # "cats:: 3 dogs" means cats, then "3 dogs": a weight is read only right after "::".
    assert parse("cats:: 3 dogs").parts == (WeightedPrompt("cats", 1.0), WeightedPrompt("3 dogs", 1.0))


def test_prompt_keeps_the_weights_as_written():
    assert parse("space::2   ship --ar 2:1").prompt == "space::2 ship"


# --- permutations ---------------------------------------------------------------------------------


def test_permutations_expand_in_order():
    assert expand_permutations("a {red, green} {bird, cat}") == [
        "a red bird",
        "a red cat",
        "a green bird",
        "a green cat",
    ]


def test_permutations_nest():
    assert expand_permutations("a {red, {dark, light} green} bird") == [
        "a red bird",
        "a dark green bird",
        "a light green bird",
    ]


def test_permutations_in_parameter_values():
    assert expand_permutations("a bird --ar {1:1, 16:9}") == ["a bird --ar 1:1", "a bird --ar 16:9"]
    assert [parse(t).aspect for t in expand_permutations("a bird --ar {1:1, 16:9}")] == [(1, 1), (16, 9)]


def test_escaped_comma_inside_braces_is_literal():
    assert expand_permutations(r"a {red\, green, blue} bird") == ["a red, green bird", "a blue bird"]
    assert parse(r"a {red\, green} bird").prompt == "a red, green bird"


def test_escaped_comma_outside_braces_is_left_alone():
    assert expand_permutations(r"a red\, green bird") == [r"a red\, green bird"]


def test_text_without_braces_is_one_prompt():
    assert expand_permutations("a bird --ar 2:1") == ["a bird --ar 2:1"]


def test_permutation_limit():
    assert len(expand_permutations("{a,b,c,d,e,f,g,h} {1,2,3,4,5}")) == 40
    with pytest.raises(PromptError, match="make 48 prompts; the limit is 40") as caught:
        expand_permutations("{a,b,c,d,e,f} {1,2,3,4,5,6,7,8}")
    assert caught.value.param is None
    with pytest.raises(PromptError, match="make 3 prompts; the limit is 2"):
        expand_permutations("{a,b,c}", limit=2)
    with pytest.raises(PromptError, match="more than 9999 prompts"):
        expand_permutations("{a,b}" * 64)


def test_parse_accepts_a_single_option_group_and_refuses_several():
    assert parse("a {red} bird").prompt == "a red bird"
    error = refused("a {red, green} bird")
    assert error.param is None
    assert "expand_permutations" in str(error)


# --- every error kind names what to fix ------------------------------------------------------------


def test_unknown_parameter():
    error = refused("a cat --aspct 2:1")
    assert error.param == "--aspct"
    assert "Unknown parameter --aspct" in str(error)
    assert "did you mean --aspect?" in str(error)
    assert "--chaos (--c)" in str(error)  # it lists what is known


@pytest.mark.parametrize(
    ("text", "param", "message"),
    [
        (
            "x --ar",
            "--aspect",
            "--aspect must be two whole numbers W:H, each from 1 to 10000, with a ratio between 1:4 and 4:1",
        ),
        ("x --chaos", "--chaos", "--chaos must be a whole number from 0 to 100 (got nothing)"),
        ("x --seed", "--seed", "--seed must be a whole number from 0 to 4294967295 (got nothing)"),
        ("x --no", "--no", "--no must be followed by what to leave out"),
        ("x --v", "--version", "--version must be a model version such as 6 or 5.2 (got --v nothing)"),
        ("x --style", "--style", "--style must be raw (got nothing)"),
        ("x --iw", "--iw", "--iw must be a number from 0 to 3 (got nothing)"),
    ],
)
def test_missing_value(text, param, message):
    error = refused(text)
    assert error.param == param
    assert message in str(error)


@pytest.mark.parametrize(
    ("text", "param", "got"),
    [
        ("x --ar 1.78:1", "--aspect", "(got --ar 1.78:1)"),
        ("x --ar 16x9", "--aspect", "(got --ar 16x9)"),
        ("x --ar 16:9:1", "--aspect", "(got --ar 16:9:1)"),
        ("x --chaos 1.5", "--chaos", "(got 1.5)"),
        ("x --chaos -5", "--chaos", "(got -5)"),
        ("x --chaos ten", "--chaos", "(got ten)"),
        ("x --s 1e3", "--stylize", "(got --s 1e3)"),
        ("x --q high", "--quality", "(got --q high)"),
        ("x --seed 0x10", "--seed", "(got 0x10)"),
        ("x --seed \u0663", "--seed", "(got \u0663)"),  # an Arabic-Indic digit is not 0-9
        ("x --tile yes", "--tile", "(got yes)"),
        ("x --v six", "--version", "(got --v six)"),
        ("x --niji six", "--niji", "(got six)"),
        ("x --style cute", "--style", "(got cute)"),
        ("x --iw nan", "--iw", "(got nan)"),
    ],
)
def test_malformed_value(text, param, got):
    error = refused(text)
    assert error.param == param
    assert str(error).startswith(f"{param} must be ")
    assert got in str(error)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x --chaos 150", "--chaos must be a whole number from 0 to 100 (got 150)"),
        ("x --stylize 1001", "--stylize must be a whole number from 0 to 1000 (got 1001)"),
        ("x --q 3", "--quality must be one of .25, .5, 1, 2 (got --q 3)"),
        ("x --q 0.75", "--quality must be one of .25, .5, 1, 2 (got --q 0.75)"),
        ("x --seed 4294967296", "--seed must be a whole number from 0 to 4294967295 (got 4294967296)"),
        ("x --seed 99999999999999999999999999", "--seed must be a whole number from 0 to 4294967295"),
        ("x --stop 9", "--stop must be a whole number from 10 to 100 (got 9)"),
        ("x --stop 101", "--stop must be a whole number from 10 to 100 (got 101)"),
        ("x --weird 3001", "--weird must be a whole number from 0 to 3000 (got 3001)"),
        ("x --r 0", "--repeat must be a whole number from 1 to 40 (got --r 0)"),
        ("x --repeat 41", "--repeat must be a whole number from 1 to 40 (got 41)"),
        ("x --iw 3.5", "--iw must be a number from 0 to 3 (got 3.5)"),
        (
            "x --ar 5:1",
            "--aspect must be two whole numbers W:H, each from 1 to 10000, with a ratio between 1:4 and 4:1",
        ),
        ("x --ar 1:5", "(got --ar 1:5)"),
        ("x --ar 0:1", "(got --ar 0:1)"),
    ],
)
def test_out_of_range(text, message):
    error = refused(text)
    assert error.param is not None
    assert error.param in str(error)
    assert message in str(error)


def test_the_issue_example_message_exactly():
    assert str(refused("x --chaos 150")) == "--chaos must be a whole number from 0 to 100 (got 150)"


def test_parameters_before_the_prompt_get_a_hint():
    error = refused("--ar 16:9 a lighthouse")
    assert error.param == "--aspect"
    assert "parameters go after the prompt text" in str(error)


@pytest.mark.parametrize(
    ("text", "param"),
    [
        ("x --ar 1:1 --ar 2:1", "--aspect"),
        ("x --ar 1:1 --aspect 2:1", "--aspect"),
        ("x --seed 1 --seed 1", "--seed"),
        ("x --tile --tile", "--tile"),
        ("x --no a --no b", "--no"),
        ("x --c 1 --chaos 2", "--chaos"),
    ],
)
def test_same_parameter_twice(text, param):
    error = refused(text)
    assert error.param == param
    assert f"{param} is given twice" in str(error)


def test_version_and_niji_both_choose_the_model():
    error = refused("x --v 6 --niji")
    assert error.param == "--niji"
    assert "--version and --niji both choose the model" in str(error)


@pytest.mark.parametrize("text", ["", "   ", "--ar 16:9", " \u2014ar 16:9 --seed 3", "{}", "{ }"])
def test_empty_prompt(text):
    error = refused(text)
    assert error.param is None
    assert "The prompt is empty" in str(error)


@pytest.mark.parametrize(
    ("text", "total"), [("a::-1", "-1"), ("a::-2 b", "-1"), ("a::0", "0"), ("a::1 b::-1", "0"), ("a::-0.5", "-0.5")]
)
def test_weights_must_sum_above_zero(text, total):
    error = refused(text)
    assert error.param is None
    assert f"Multi-prompt weights must add up to more than 0 (they add up to {total})" in str(error)


@pytest.mark.parametrize(("text", "written"), [("::2 a cat", "::2"), ("::", "::"), ("a:: ::3 b", "::3")])
def test_weight_without_text(text, written):
    error = refused(text)
    assert error.param is None
    assert f"Each '::' weight needs text before it; '{written}' has none" in str(error)


def test_huge_weight():
    error = refused("a::" + "9" * 400 + " b")
    assert "Multi-prompt weights must be between -1000 and 1000" in str(error)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("a {red, green bird", "the '{' at character 3 is never closed"),
        ("a red, green} bird", "the '}' at character 13 closes nothing"),
        ("a {{red}", "the '{' at character 3 is never closed"),
        ("x --ar {1:1, 2:1", "is never closed"),
    ],
)
def test_unbalanced_braces(text, where):
    for call in (parse, expand_permutations):
        with pytest.raises(PromptError, match="Unbalanced braces") as caught:
            call(text)
        assert caught.value.param is None
        assert where in str(caught.value)


def test_deep_nesting_is_refused_not_a_crash():
    with pytest.raises(PromptError, match="nest more than 8 deep"):
        expand_permutations("{" * 1900 + "}" * 1900)  # within the length limit, far past the depth limit


def test_prompt_error_is_a_value_error_and_pickles():
    error = refused("x --chaos 150")
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.param, str(copy)) == (error.param, str(error))


# --- writing a request back -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "a lighthouse at dusk --ar 16:9 --seed 7 --no people",
        "https://a.b/c.png space::2 ship::-0.5 --c 30 --s 750 --q .25 --stop 40 --w 12 --tile --r 3 --iw 0.00001",
        "a cat --niji 6 --style raw",
        "a cat --niji",
        "a cat --v 5.2",
    ],
)
def test_canonical_text_and_dict_round_trip(text):
    request = parse(text)
    assert parse(request.to_prompt()) == request
    assert ImagineRequest.from_dict(request.to_dict()) == request


def test_canonical_text_shows_only_what_differs_from_defaults():
    assert parse("a cat --ar 1:1 --chaos 0 --q 1").to_prompt() == "a cat"
    assert parse("a cat --aspect 16:9").to_prompt() == "a cat --ar 16:9"


def test_from_dict_refuses_tampered_data():
    data = parse("a cat --seed 3").to_dict()
    with pytest.raises(PromptError):
        ImagineRequest.from_dict({**data, "chaos": 500})
    with pytest.raises(PromptError, match="Not a stored imagine request"):
        ImagineRequest.from_dict({**data, "colour": "red"})
    with pytest.raises(PromptError, match="does not match"):
        ImagineRequest.from_dict({**data, "prompt": "a dog"})


def test_given_parameters_names_what_a_prompt_sets():
    given = given_parameters("a cat --ar 16:9 \u2014s 250 --no dogs --v 6")
    assert given == {"--aspect", "--stylize", "--no", "--version"}
    assert given_parameters("a cat") == set()
    assert given_parameters("a cat --nonsense 3 --tile") == {"--tile"}, "unknown names are left to parse() to refuse"
