"""Analytics CSV exports defuse text a spreadsheet would run as a formula (CSV injection)."""

from __future__ import annotations

import csv
import io

from central_system.controllers.analytics_controller import Table


def test_analytics_csv_defuses_formula_text_but_keeps_numbers() -> None:
    table = Table(
        name="answer_times_by_faculty",
        columns=("faculty", "department", "answered", "median_s"),
        rows=[
            ('=HYPERLINK("http://x","y")', "+Physics", 3, 12.34567),
            ("Dr. Ana Reyes", "-CS", -1, -2.5),
            ("@SUM(A1)", "Math", 0, None),
        ],
    )
    rows = list(csv.reader(io.StringIO(table.to_csv())))
    assert rows[0] == ["faculty", "department", "answered", "median_s"]
    assert rows[1] == ['\'=HYPERLINK("http://x","y")', "'+Physics", "3", "12.346"]
    assert rows[2] == ["Dr. Ana Reyes", "'-CS", "-1", "-2.5"]
    assert rows[3] == ["'@SUM(A1)", "Math", "0", ""]
