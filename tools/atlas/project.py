"""Facts about the project itself, kept in one place for every generator."""

from __future__ import annotations

SITE_URL = "https://peft-atlas.github.io/peft-atlas/"
SURVEY_TITLE = "Parameter-Efficient Fine-Tuning for Foundation Models"
SURVEY_ARXIV = "2501.13787"
SURVEY_AUTHORS = "Zhang, Feng, Xue, Wang, Dong and Tang"
SURVEY_YEAR = 2025
# As the survey's authors ask to be cited (their list), with the sixth author, Dong, whose given name our sources
# do not record.
SURVEY_BIBTEX = """@article{zhang2025parameter,
  title = {Parameter-Efficient Fine-Tuning for Foundation Models},
  author = {Zhang, Dan and Feng, Tao and Xue, Lilong and Wang, Yuandong and Dong and Tang, Jie},
  journal = {arXiv preprint arXiv:2501.13787},
  year = {2025}
}"""


def method_page_url(method: str) -> str:
    return f"{SITE_URL}methods/{method}/"


def arxiv_url(arxiv_id: str) -> str:
    return f"https://arxiv.org/abs/{arxiv_id}"
