"""jtrades: TradingView alerts to Tradovate orders."""
