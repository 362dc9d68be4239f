"""The table of actions (engine.actions): what each follow-up starts from, the buttons every front door
shows, the refusals that keep impossible follow-ups from becoming jobs, and Discord's ids for its buttons."""

from __future__ import annotations

import pytest

from bot.discord.components import custom_id, parse_custom_id
from engine.actions import ACTIONS, ALL_BUTTONS, FollowUpOptions, ResultKind, buttons, check_follow_up, describe
from engine.errors import InvalidFollowUp
from engine.jobs import Action, PanDirection

SQUARE, WIDE, HUGE = (1024, 1024), (1344, 768), (2800, 1600)


def labels(rows):
    return [[button.label or button.emoji for button in row] for row in rows]


def test_every_action_has_an_entry_and_every_button_an_action_that_starts_from_its_result():
    assert set(ACTIONS) == set(Action)
    for kind in ResultKind:
        for row in buttons(kind):
            assert 0 < len(row) <= 5, "Discord allows five buttons a row"
            for button in row:
                assert kind in ACTIONS[button.action].starts_from, (kind, button)


def test_a_grid_shows_u_and_v_for_each_image_and_a_reroll():
    assert labels(buttons(ResultKind.GRID, SQUARE)) == [["U1", "U2", "U3", "U4", "🔄"], ["V1", "V2", "V3", "V4"]]


def test_a_single_image_shows_only_what_can_start_from_it():
    wide = labels(buttons(ResultKind.SINGLE, WIDE))
    assert wide == [
        ["Upscale (Subtle)", "Upscale (Creative)", "Vary (Subtle)", "Vary (Strong)"],
        ["Zoom Out 2x", "Zoom Out 1.5x", "Custom Zoom", "Make Square"],
        ["⬅️", "➡️", "⬆️", "⬇️"],
    ]
    assert "Make Square" not in labels(buttons(ResultKind.SINGLE, SQUARE))[1], "a square image is square already"
    huge = labels(buttons(ResultKind.SINGLE, HUGE))
    assert huge[0] == ["Vary (Subtle)", "Vary (Strong)"], "a 2x upscale would pass 4096 px a side"
    assert huge[2] == ["⬆️", "⬇️"], "a pan left or right would make it 4200 wide; up or down 2400 high fits"
    assert labels(buttons(ResultKind.SINGLE, None)) == wide, "size unknown (an old record): every button"


@pytest.mark.parametrize(
    ("kind", "size", "action", "index", "options", "message"),
    [
        (ResultKind.SINGLE, SQUARE, Action.MAKE_SQUARE, None, FollowUpOptions(), "The image is already square"),
        (ResultKind.GRID, SQUARE, Action.ZOOM_OUT, 1, FollowUpOptions(), "Zoom Out is not possible on a grid"),
        (ResultKind.SINGLE, SQUARE, Action.REROLL, None, FollowUpOptions(), "Re-roll is not possible on a single"),
        (ResultKind.GRID, SQUARE, Action.VARY_STRONG, None, FollowUpOptions(), r"Pick an image .* \(got None\)"),
        (ResultKind.GRID, SQUARE, Action.SEPARATE, 5, FollowUpOptions(), r"1, 2, 3 or 4 \(got 5\)"),
        (ResultKind.GRID, SQUARE, Action.REROLL, 2, FollowUpOptions(), "Re-roll works on the whole grid"),
        (ResultKind.SINGLE, SQUARE, Action.ZOOM_OUT, None, FollowUpOptions(scale=2.5), r"from 1 to 2 \(got 2.5\)"),
        (ResultKind.SINGLE, SQUARE, Action.ZOOM_OUT, None, FollowUpOptions(scale=float("nan")), "Zoom must be"),
        (ResultKind.SINGLE, SQUARE, Action.ZOOM_OUT, None, FollowUpOptions(aspect=(9, 1)), "between 1:4 and 4:1"),
        (ResultKind.SINGLE, SQUARE, Action.PAN, None, FollowUpOptions(), "Pan needs a direction"),
        (ResultKind.SINGLE, HUGE, Action.UPSCALE_CREATIVE, None, FollowUpOptions(), "would make the image 5600x3200"),
        (ResultKind.SINGLE, HUGE, Action.PAN, None, FollowUpOptions(direction=PanDirection.LEFT), "Pan left would"),
    ],
)
def test_impossible_follow_ups_are_refused_with_what_to_do(kind, size, action, index, options, message):
    with pytest.raises(InvalidFollowUp, match=message):
        check_follow_up(kind, size, action, index, options)


def test_possible_follow_ups_pass():
    check_follow_up(ResultKind.GRID, SQUARE, Action.REROLL, None, FollowUpOptions())
    check_follow_up(ResultKind.GRID, SQUARE, Action.VARY_SUBTLE, 3, FollowUpOptions())
    check_follow_up(ResultKind.SINGLE, WIDE, Action.MAKE_SQUARE, None, FollowUpOptions())
    check_follow_up(ResultKind.SINGLE, None, Action.MAKE_SQUARE, None, FollowUpOptions())
    check_follow_up(ResultKind.SINGLE, HUGE, Action.PAN, None, FollowUpOptions(direction=PanDirection.UP))


def test_what_a_result_says_after_its_prompt():
    assert describe(Action.SEPARATE, 2) == "Image #2"
    assert describe(Action.ZOOM_OUT, None, FollowUpOptions(scale=1.5)) == "Zoom Out 1.5x"
    assert describe(Action.PAN, None, FollowUpOptions(direction=PanDirection.LEFT)) == "Pan Left"
    assert describe(Action.VARY_STRONG) == "Variations (Strong)"
    assert describe(Action.IMAGINE) == ""


def test_options_round_trip_through_a_job_record():
    options = FollowUpOptions(scale=1.25, aspect=(16, 9), direction=PanDirection.DOWN)
    assert FollowUpOptions.from_params(options.to_params()) == options
    assert FollowUpOptions.from_params({}) == FollowUpOptions()


def test_each_button_has_its_own_discord_id_which_parses_back():
    job = "0123456789abcdef" * 2
    ids = [custom_id(button, job) for button in ALL_BUTTONS]
    assert len(set(ids)) == len(ids)
    assert all(len(i) <= 100 for i in ids)
    for button, text in zip(ALL_BUTTONS, ids, strict=True):
        assert parse_custom_id(text.removeprefix("dl:")) == (button, job, None)


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ("u:" + "a" * 32 + ":7", "names no image of the grid"),
        ("z:" + "a" * 32 + ":9", "no valid scale"),
        ("p:" + "a" * 32 + ":sideways", "no valid direction"),
        ("r:" + "a" * 32 + ":1", "carries an argument it does not take"),
        ("u:" + "A" * 32 + ":1", "does not name a valid job"),
        ("u:../../etc:1", "does not name a valid job"),
        ("zz:" + "a" * 32, "not one of dreamloom's"),
        ("u:" + "a" * 32 + ":1:extra", "not one of dreamloom's"),
        ("", "not one of dreamloom's"),
        ("x" * 5000, "not one of dreamloom's"),
    ],
)
def test_forged_button_ids_are_explained_not_followed(payload, problem):
    button, _job, said = parse_custom_id(payload)
    assert button is None
    assert said is not None
    assert problem in said
