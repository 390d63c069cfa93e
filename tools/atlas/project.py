"""Facts about the project itself, kept in one place for every generator."""

from __future__ import annotations

SITE_URL = "https://peft-atlas.github.io/peft-atlas/"
SURVEY_TITLE = "Parameter-Efficient Fine-Tuning for Foundation Models"
SURVEY_ARXIV = "2501.13787"
SURVEY_AUTHORS = "Zhang, Feng, Xue, Wang, Dong and Tang"
SURVEY_YEAR = 2025


def method_page_url(method: str) -> str:
    return f"{SITE_URL}methods/{method}/"


def arxiv_url(arxiv_id: str) -> str:
    return f"https://arxiv.org/abs/{arxiv_id}"
