"""The daily-loss refusal shows today's P&L rounded half-even, while `trades list` (money())
rounds the same amount half-up: a ZN round trip losing one tick ($15.625) reads -15.63 in the
trades table and -15.62 in the refusal the signals listing shows."""

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from jtrades.cli.common import money
from jtrades.engine.filters import TraderState, check_trader
from jtrades.engine.risk import RiskSettings
from jtrades.engine.signal import Action, Signal


def test_refusal_reads_the_loss_as_the_trades_table_does() -> None:
    loss = Decimal("-15.625")  # one ZN tick, 1 contract
    st = TraderState(
        realized_pnl_today=loss, open_pnl=Decimal(0), last_entry_at=None, entries_this_session=0
    )
    rej = check_trader(
        Signal(Action.BUY, ticker="ZN1!", price=Decimal("110.5")),
        RiskSettings(max_daily_loss=Decimal(15)),
        st,
        datetime.now(UTC),
        ZoneInfo("America/Chicago"),
        enabled=True,
        owner_active=True,
        halted=False,
    )
    assert rej is not None
    assert rej.filter == "max_daily_loss"
    shown_in_trades_list = money(loss)  # "-15.63"
    assert f"realized {shown_in_trades_list}" in rej.reason, rej.reason
