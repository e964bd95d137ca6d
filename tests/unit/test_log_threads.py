"""The test harness's per-thread logging (``tests.log_threads``): a CLI command run in a worker
thread configures logging for itself, and the engine's events logged meanwhile on another
thread still reach the test's ``capture_logs`` (a flatten test lost its one-shot event)."""

from __future__ import annotations

import threading

import structlog

from tests.log_threads import own_configuration


def test_a_command_thread_configuring_logging_leaves_the_other_threads_captured() -> None:
    configured, logged = threading.Event(), threading.Event()
    command_saw: list[dict[str, object]] = []

    def command() -> None:
        def keep(_: object, __: str, event_dict: dict[str, object]) -> dict[str, object]:
            command_saw.append(dict(event_dict))
            raise structlog.DropEvent

        with own_configuration():
            structlog.configure(processors=[keep])  # what jtrades.logging.configure does
            configured.set()
            logged.wait(5)
            structlog.get_logger().info("command.said")

    with structlog.testing.capture_logs() as captured:
        t = threading.Thread(target=command)
        t.start()
        assert configured.wait(5)
        structlog.get_logger().warning("engine.flatten_abandoned", account="a")
        logged.set()
        t.join(5)
        structlog.get_logger().info("engine.after")

    assert [e["event"] for e in captured] == ["engine.flatten_abandoned", "engine.after"]
    assert captured[0]["account"] == "a"
    assert [e["event"] for e in command_saw] == ["command.said"]
    assert structlog.configure.__module__ == "structlog._config"  # routing undone
