"""The model card as Markdown, whole (the artifact) or within a length limit (the registry's description).

Within a limit the gate's checks table first keeps its first four columns (check, result, value, limit), then
the longest sections are cut, each pointing at the full card.
"""

from __future__ import annotations

from typing import Any

SECTION_TITLES = {
    "details": "Model details",
    "intended_use": "Intended use",
    "training_data": "Training data",
    "evaluation": "Evaluation",
    "gate": "Gate verdict",
    "fairness": "Fairness",
    "explanations": "Explanations",
    "limitations": "Limitations",
    "history": "Promotion history",
}


def render_markdown(card: dict[str, Any], limit: int | None = None, full_card_uri: str = "") -> str:
    """Markdown of the card; with ``limit``, the longest sections are cut until it fits, pointing at the full
    card."""
    sections = {k: card[k] for k in SECTION_TITLES}

    def render() -> str:
        body = "\n\n".join(f"## {SECTION_TITLES[k]}\n\n{v}" for k, v in sections.items())
        return f"# {card['title']}\n\n{body}\n"

    text = render()
    if limit is not None and len(text) > limit and "gate" in sections:
        sections["gate"] = first_columns(sections["gate"]) + "\n\n_(every column in the full card)_"
        text = render()
    while limit is not None and len(text) > limit:
        longest = max(sections, key=lambda k: len(sections[k]))
        keep = max(0, len(sections[longest]) - (len(text) - limit) - 120)
        sections[longest] = (
            sections[longest][:keep].rstrip() + f"\n\n_(shortened; full card: {full_card_uri})_"
        )
        text = render()
    return text


def first_columns(section: str, keep: int = 4) -> str:
    """A section's Markdown tables cut to their first ``keep`` columns; other lines unchanged."""
    lines = []
    for line in section.splitlines():
        if line.startswith("|"):
            line = "| " + " | ".join(cell.strip() for cell in line.strip("|").split("|")[:keep]) + " |"
        lines.append(line)
    return "\n".join(lines)
