"""Every generated alert links to a section of docs/runbooks/alerts.md that exists, and every link there works."""

from __future__ import annotations

import re

import pytest

from tests.helpers.stacks import ROOT, STACKS
from vzkeep.config import load_stack_file
from vzkeep.monitoring import rules
from vzkeep.plan import plan_stack

RUNBOOKS = ROOT / "docs" / "runbooks"
INDEX = RUNBOOKS / "alerts.md"


def anchors(markdown: str) -> set[str]:
    # GitHub's anchors for "## BackupFailed": lower case, spaces to dashes.
    return {h.strip().lower().replace(" ", "-") for h in re.findall(r"^## (.+)$", markdown, re.M)}


def generated_rules() -> list[dict]:
    found = []
    for name in STACKS:
        plan = plan_stack(load_stack_file(ROOT / f"Pulumi.{name}.yaml"))
        documents = [rules.env_rules_document(plan.thresholds, state_bucket=True), rules.global_rules_document()]
        found += [rule for doc in documents for group in doc["groups"] for rule in group["rules"]]
    return found


@pytest.mark.parametrize("rule", generated_rules(), ids=lambda r: r["alert"])
def test_each_alert_links_to_an_existing_section(rule):
    url = rule["annotations"]["runbook_url"]
    path, _, anchor = url.partition("#")
    assert (ROOT / path).is_file(), url
    assert anchor in anchors((ROOT / path).read_text()), f"{url}: no section '## {rule['alert']}'"


def test_links_in_the_alert_index_point_to_real_runbooks():
    text = INDEX.read_text()
    for target in re.findall(r"\]\(([^)#]+\.md)", text):
        assert (RUNBOOKS / target).is_file(), target
    for anchor in re.findall(r"\]\(#([^)]+)\)", text):
        assert anchor in anchors(text), anchor
