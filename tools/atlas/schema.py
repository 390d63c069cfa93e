"""The catalogue schema: one Pydantic model per YAML document kind.

`catalog/papers/<key>.yaml` holds one `Paper`; `catalog/taxonomy.yaml` holds the `Taxonomy`.
Checks that need more than one field of one file (category and subcategory agree with the
taxonomy, keys are unique, the file name matches the key, refimpl links resolve) live in
`atlas.loader`, which reports every problem with its file and line.
"""

from __future__ import annotations

import datetime as _dt
import re
from enum import Enum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

ARXIV_ID = re.compile(r"^\d{4}\.\d{4,5}$")
KEY = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
METHOD_NAME = r"^[a-z][a-z0-9_]*$"
FIRST_YEAR = 1990


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/$.?#][^\s]*$", value, flags=re.IGNORECASE):
        raise ValueError("must be an http(s) URL")
    return value


def _arxiv_id(value: str) -> str:
    if not ARXIV_ID.match(value):
        raise ValueError("must be a new-style arXiv id such as 2106.09685 (no version suffix)")
    return value


def _year(value: int) -> int:
    last = _dt.date.today().year + 1
    if not FIRST_YEAR <= value <= last:
        raise ValueError(f"must be between {FIRST_YEAR} and {last}")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]
ArxivId = Annotated[str, AfterValidator(_arxiv_id)]
Year = Annotated[int, AfterValidator(_year)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Key = Annotated[str, StringConstraints(pattern=KEY)]
MethodName = Annotated[str, StringConstraints(pattern=METHOD_NAME)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- taxonomy -------------------------------------------------------------------------------


class Subcategory(Strict):
    id: Key
    name: Text
    definition: Text


class Category(Strict):
    id: Key
    name: Text
    definition: Text
    subcategories: list[Subcategory] = Field(default_factory=list)


class FoundationModelType(Strict):
    id: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2,5}$")]
    name: Text
    definition: Text
    color: Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$")]


class Taxonomy(Strict):
    categories: list[Category]
    foundation_models: list[FoundationModelType]


# --- papers ---------------------------------------------------------------------------------


class PaperKind(str, Enum):
    """Whether the paper proposes a PEFT method, or is listed for another reason."""

    method = "method"  # proposes a parameter-efficient fine-tuning method
    analysis = "analysis"  # studies fine-tuning behaviour without proposing a method
    backbone = "backbone"  # a pre-training / foundation model that PEFT methods build on
    off_topic = "off-topic"  # listed upstream by mistake


class Relation(str, Enum):
    implements = "implements"  # the refimpl method is this paper's method
    uses = "uses"  # the paper applies or builds on that method
    related = "related"  # not a method; the closest implementation to its content


class Links(Strict):
    paper: HttpUrl | None = None
    arxiv: ArxivId | None = None
    code: HttpUrl | None = None
    project: HttpUrl | None = None


class Table1(Strict):
    """A row of the survey's Table 1, transcribed as printed (venue and year may be wrong there)."""

    approach: Text
    ref: int = Field(ge=1)
    venue_as_printed: Text
    foundation_models: list[Text]
    structure_change: bool
    position: Text | None = None
    inference_efficient: bool
    adds_parameters: bool
    trainable_params: Text | None = None


class Upstream(Strict):
    """Where the survey authors' awesome list files the paper, with the fields it got wrong."""

    category: Text
    foundation_model: Text
    subheading: Text | None = None
    position: int = Field(ge=1)
    title: Text | None = None  # only when it differs from ours
    venue: Text | None = None  # as listed, only when it differs from ours
    authors: Text | None = None  # as listed, only when it differs from ours


class RefImpl(Strict):
    method: MethodName
    relation: Relation
    also: list[MethodName] = Field(default_factory=list)


class BibtexType(str, Enum):
    inproceedings = "inproceedings"
    article = "article"
    misc = "misc"


class Bibtex(Strict):
    type: BibtexType
    # The full venue name for booktitle / journal; the short `venue` is used when absent.
    venue_full: Text | None = None
    key: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_:-]+$")] | None = None
    pages: Text | None = None
    volume: Text | None = None
    number: Text | None = None
    doi: Annotated[str, StringConstraints(pattern=r"^10\.\d{4,9}/\S+$")] | None = None


class Paper(Strict):
    key: Key
    title: Text
    authors: list[Text] = Field(min_length=1)
    authors_complete: bool = True  # false when only the first author(s) were verified
    kind: PaperKind = PaperKind.method
    venue: Text | None = None  # None: no peer-reviewed venue verified
    year: Year | None = None  # None: no publication year verified
    category: Key
    subcategory: Key | None = None
    foundation_models: list[Text] = Field(min_length=1)
    links: Links = Field(default_factory=Links)
    table1: Table1 | None = None
    upstream: Upstream | None = None  # present iff the paper is in the upstream awesome list
    summary: Text
    refimpl: RefImpl
    notes: list[Text] = Field(default_factory=list)
    bibtex: Bibtex

    @property
    def in_upstream_list(self) -> bool:
        return self.upstream is not None

    @property
    def arxiv_year(self) -> int | None:
        """The year an arXiv id encodes (YYMM.NNNNN), a verifiable fallback for unpublished work."""
        return 2000 + int(self.links.arxiv[:2]) if self.links.arxiv else None

    @property
    def display_year(self) -> int | None:
        return self.year or self.arxiv_year

    @property
    def display_venue(self) -> str:
        if self.venue:
            return self.venue
        return "arXiv" if self.links.arxiv else "unpublished"

