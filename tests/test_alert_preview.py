"""`RulePreview.alerts(after=...)`: the alerts a real Prometheus holds as of a healthy scrape made after the
moment asked about; never those of the page served before it, nor the emptiness that failed scrapes leave."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import yaml

from tests.helpers.tools import StaticExporter, require_tool
from vzkeep.monitoring.alert_preview import RulePreview

RULES = yaml.safe_dump({"groups": [{"name": "preview", "rules": [
    {"alert": "StateIsOne", "expr": "vzkeep_test_state == 1", "labels": {"severity": "warning"}}]}]})


def test_the_alerts_are_those_of_the_page_served_after_the_moment_asked_about(
        monkeypatch: pytest.MonkeyPatch) -> None:
    require_tool("prometheus")
    # Prometheus' API writes its times in its local zone, with their offset: one away from UTC here (the other
    # tests that start Prometheus run it in the machine's zone, UTC in CI).
    monkeypatch.setenv("TZ", "Europe/Paris")
    with StaticExporter("vzkeep_test_state 0\n") as page, RulePreview([RULES], page.address) as preview:
        assert preview.alerts() == []  # the first page, evaluated
        page.fail_next = 1  # the next scrape fails: every series goes stale in between
        page.text = "vzkeep_test_state 1\n"
        alerts = preview.alerts(after=time.time())  # Prometheus runs on the wall clock: "after" is on it too
        assert page.scrapes >= 3, "the answer came before a scrape of the new page"
    assert [(a.name, a.state, a.labels["severity"]) for a in alerts] == [("StateIsOne", "firing", "warning")]


def test_prometheus_api_times_keep_their_zone_offset() -> None:
    # Prometheus writes its API's times (lastEvaluation, lastScrape) in its own local zone, with nanoseconds.
    from vzkeep.monitoring.alert_preview import _epoch

    utc = datetime(2026, 12, 6, 21, 41, 2, 165580, tzinfo=UTC).timestamp()
    assert _epoch("2026-12-06T22:41:02.165580021+01:00") == utc
    assert _epoch("2026-12-06T21:41:02.165580021Z") == utc
    assert _epoch("0001-01-01T00:00:00Z") == 0.0  # never
