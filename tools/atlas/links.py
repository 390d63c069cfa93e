"""Checking the catalogue's links: offline checks that tests can run, and an opt-in live check.

Offline: every link is http(s) with a host (the schema already refuses other schemes), no host is on the
known-bad list (placeholders, local addresses, link shorteners that hide where they lead), and no paper page
serves two papers (a copy-paste error); a code or project address shared by papers is reported for a look, since
one repository may serve two papers (AdapterHub) or be a mistake (the upstream list's reused LyCORIS link). Live (`atlas links --live`): each address is fetched; 403 and 429 (sites that refuse robots or
rate-limit) and network failures are reported, never fatal.
"""

from __future__ import annotations

import ipaddress
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from atlas.loader import Catalog

# Hosts that never belong in a published catalogue.
BAD_HOSTS = frozenset(
    {"example.com", "example.org", "example.net", "localhost", "bit.ly", "tinyurl.com", "t.co"}
)
TOLERATED_STATUSES = frozenset({403, 429})
USER_AGENT = "peft-atlas-linkcheck/1 (+https://peft-atlas.github.io/peft-atlas/)"


@dataclass(frozen=True)
class Link:
    paper: str
    field: str
    url: str


@dataclass(frozen=True)
class LinkProblem:
    link: Link
    message: str
    fatal: bool = True

    def __str__(self) -> str:
        return f"catalog/papers/{self.link.paper}.yaml: links.{self.link.field}: {self.message}"


def catalogue_links(catalog: Catalog) -> Iterator[Link]:
    for paper in catalog.papers:
        for field in ("paper", "code", "project"):
            url = getattr(paper.links, field)
            if url:
                yield Link(paper.key, field, url)


def _host_problem(url: str) -> str | None:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        return "not an http(s) address with a host"
    if host in BAD_HOSTS or any(host.endswith("." + bad) for bad in BAD_HOSTS):
        return f"host {host} is on the known-bad list"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return f"a bare IP address ({address}) instead of a host name"


def check_offline(catalog: Catalog) -> list[LinkProblem]:
    links = list(catalogue_links(catalog))
    problems = [LinkProblem(link, message) for link in links if (message := _host_problem(link.url))]
    papers_by_url: dict[str, set[str]] = defaultdict(set)
    for link in links:
        papers_by_url[link.url.rstrip("/")].add(link.paper)
    for link in links:
        others = sorted(papers_by_url[link.url.rstrip("/")] - {link.paper})
        if others:
            message = f"the same address is a link of {', '.join(others)}"
            problems.append(LinkProblem(link, message, fatal=link.field == "paper"))
    return problems


Fetch = Callable[[str], int]


def fetch_status(url: str, timeout: float = 15.0) -> int:
    """The HTTP status of a GET (HEAD is refused by too many sites), following redirects."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def check_live(catalog: Catalog, fetch: Fetch = fetch_status, workers: int = 8) -> list[LinkProblem]:
    """Fetch every link; broken ones (4xx/5xx other than 403/429) are fatal, the rest only reported."""
    links = list(catalogue_links(catalog))

    def probe(link: Link) -> LinkProblem | None:
        try:
            status = fetch(link.url)
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            return LinkProblem(link, f"unreachable ({error})", fatal=False)
        if status in TOLERATED_STATUSES:
            return LinkProblem(
                link, f"HTTP {status} (the site refuses automated checks; check by hand)", fatal=False
            )
        if status >= 400:
            return LinkProblem(link, f"HTTP {status}")
        return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [problem for problem in pool.map(probe, links) if problem is not None]
