"""azfed.texttable.table, the one text table of the CLI (policy, quota) and the demo."""

from __future__ import annotations

from azfed.nova.quota import QuotaChange, render
from azfed.texttable import table


def test_a_table_aligns_columns_under_a_dashed_rule_and_prints_none_as_a_dash() -> None:
    text = table(["az", "cost/h", "room"], [["aws-az", 0.5, None], ["os-az", 12.25, 3]])
    assert text.splitlines() == [
        "az      cost/h  room",
        "------  ------  ----",
        "aws-az  0.5     -",
        "os-az   12.25   3",
    ]


def test_the_quota_table_names_the_project_and_shows_unlimited() -> None:
    changes = [QuotaChange("instances", 10, 14), QuotaChange("cores", -1, -1)]
    assert render("demo", changes).splitlines() == [
        "project demo",
        "resource   before     after",
        "---------  ---------  ---------",
        "instances  10         14",
        "cores      unlimited  unlimited",
    ]
