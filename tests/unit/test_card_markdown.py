"""The model card within the registry's description limit: the gate's checks stay readable."""

from __future__ import annotations

from driftloop.governance.card_markdown import SECTION_TITLES, first_columns, render_markdown

WIDE_TABLE = "\n".join(
    [
        "Verdict: **passed**.",
        "",
        "| check | result | value | limit | " + " | ".join(f"extra_{i}" for i in range(20)) + " |",
        "|" + "---|" * 24,
        "| floor.AUC | pass | 0.8454 | 0.7500 | " + " | ".join("—" for _ in range(20)) + " |",
        "| floor.F1 | **FAIL** | 0.4100 | 0.5000 | " + " | ".join("1234.5678" for _ in range(20)) + " |",
    ]
)


def _card(**sections: str) -> dict[str, str]:
    return {"title": "m v2", **{k: "x" for k in SECTION_TITLES}, **sections}


def test_a_long_card_keeps_every_check_row_with_its_first_four_columns():
    card = _card(gate=WIDE_TABLE, fairness="fairness table " * 40)
    full = render_markdown(card)
    limit = len(full) - 300

    text = render_markdown(card, limit=limit, full_card_uri="runs:/r/model_card/model_card.md")

    assert len(text) <= limit
    assert "| floor.AUC | pass | 0.8454 | 0.7500 |\n" in text
    assert "| floor.F1 | **FAIL** | 0.4100 | 0.5000 |\n" in text
    assert "extra_0" not in text and "every column in the full card" in text
    assert "fairness table " * 40 in text  # the compact table was enough: nothing else was cut


def test_a_card_that_fits_is_left_whole():
    card = _card(gate=WIDE_TABLE)
    assert render_markdown(card, limit=100_000) == render_markdown(card)
    assert "extra_19" in render_markdown(card, limit=100_000)


def test_first_columns_cuts_tables_only():
    section = "text | with a bar\n| a | b | c |\n|---|---|---|\n| 1 | 2 | 3 |"
    assert first_columns(section, keep=2) == "text | with a bar\n| a | b |\n| --- | --- |\n| 1 | 2 |"
