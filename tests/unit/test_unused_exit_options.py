"""Options a recorder or trader sets that its own exits never use are said when they are set
(``risk.unused_exit_options``): accepted silently, a user read protection never placed."""

from __future__ import annotations

from decimal import Decimal

import pytest

from jtrades.engine.risk import RiskSettings, SameDirection, SlType, parse_tp, unused_exit_options


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        (RiskSettings(breakeven_trigger=Decimal(10)), "--breakeven moves a stop"),
        (RiskSettings(sl=Decimal(20), trail_trigger=Decimal(8)), "--sl-type is fixed"),
        # every add ignored: "adding needs --dca" at each alert, never at the command
        (
            RiskSettings(sl=Decimal(40), same_direction=SameDirection.ADD),
            "--same-direction add with a TP or SL needs --dca",
        ),
    ],
)
def test_an_option_its_exits_never_use_is_said(settings: RiskSettings, said: str) -> None:
    assert any(said in why for why in unused_exit_options(settings)), unused_exit_options(settings)


@pytest.mark.parametrize(
    "settings",
    [
        RiskSettings(),
        RiskSettings(
            sl=Decimal(20), sl_type=SlType.TRAILING, trail_trigger=Decimal(4), trail_freq=Decimal(8)
        ),
        # a step with no trigger steps from the first tick in profit (``exits``): in use
        RiskSettings(sl=Decimal(20), sl_type=SlType.TRAILING, trail_freq=Decimal(8)),
        RiskSettings(sl=Decimal(40), same_direction=SameDirection.ADD, dca=True),
        RiskSettings(same_direction=SameDirection.ADD),  # no exits: adds go as plain orders
        RiskSettings(tp=parse_tp("40"), same_direction=SameDirection.IGNORE),
    ],
)
def test_options_in_use_are_not_warned_about(settings: RiskSettings) -> None:
    assert unused_exit_options(settings) == []
