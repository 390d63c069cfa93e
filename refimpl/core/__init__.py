"""Mechanics shared by every method: registry, targeting, injection and removal, merging, adapter files."""
