"""The PEFT Atlas website: pages, charts and downloads generated from the catalogue at build time.

`mkdocs.yml` registers `hook.py` (an mkdocs hook module); the hook loads the catalogue beside the config
file, turns it into in-memory pages (`pages.py`) and adds them to the build, so nothing generated is
committed. Everything taken from the catalogue is escaped by the Jinja templates (autoescape on).
"""
