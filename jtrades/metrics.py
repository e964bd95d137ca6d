"""Counters the daemon exposes at ``/metrics`` (Prometheus text format)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Metrics:
    """Counters for ``/metrics`` (Prometheus text format)."""

    started: float = field(default_factory=time.monotonic)
    responses: Counter[int] = field(default_factory=Counter)
    verdicts: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    seconds_sum: float = 0.0  # time spent answering webhooks, for the mean latency
    seconds_count: int = 0

    def render(
        self, *, inflight: int, tokens: int, ready: bool, config_version: str | None = None
    ) -> str:
        lines = [
            "# TYPE jtrades_uptime_seconds gauge",
            f"jtrades_uptime_seconds {time.monotonic() - self.started:.3f}",
            "# TYPE jtrades_ready gauge",
            f"jtrades_ready {int(ready)}",
            "# TYPE jtrades_webhook_inflight gauge",
            f"jtrades_webhook_inflight {inflight}",
            "# TYPE jtrades_recorder_tokens gauge",
            f"jtrades_recorder_tokens {tokens}",
        ]
        if config_version is not None:
            # which configuration the daemon trades with: after a CLI change, equal to the
            # database's fingerprint once the daemon has loaded it
            lines += [
                "# TYPE jtrades_config_info gauge",
                f'jtrades_config_info{{fingerprint="{config_version}"}} 1',
            ]
        lines += [
            "# TYPE jtrades_webhook_responses_total counter",
        ]
        lines += [
            f'jtrades_webhook_responses_total{{status="{s}"}} {n}'
            for s, n in sorted(self.responses.items())
        ]
        lines.append("# TYPE jtrades_signals_total counter")
        lines += [
            f'jtrades_signals_total{{verdict="{v}"}} {n}' for v, n in sorted(self.verdicts.items())
        ]
        lines += [
            "# TYPE jtrades_webhook_errors_total counter",
            f"jtrades_webhook_errors_total {self.errors}",
            "# TYPE jtrades_webhook_seconds summary",
            f"jtrades_webhook_seconds_sum {self.seconds_sum:.6f}",
            f"jtrades_webhook_seconds_count {self.seconds_count}",
        ]
        return "\n".join(lines) + "\n"
