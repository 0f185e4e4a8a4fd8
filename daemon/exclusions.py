"""Exclusion patterns: globs matched against a file's full path, ignoring case, with `**`, `*`, `?`, `[…]`, `{a,b}`.

The semantics are wcmatch's `glob.globmatch` (GLOBSTAR | BRACE | IGNORECASE | DOTGLOB). Matching a million paths
through it costs ~18 µs each, so the two shapes that nearly every library uses take a fast path with the same
meaning, built from wcmatch's own translation:

- `**/NAME` (no `/` in NAME): the path's last component matches NAME — one combined regex on the basename,
  applied to files and to directories (a matching directory is not descended).
- `**/NAME/**`: some directory component matches NAME — tested once per directory while descending, which prunes
  the whole subtree.

Every other pattern is matched on the full path by wcmatch. `tests/daemon/test_exclusions.py` checks the fast
path against plain wcmatch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from wcmatch import fnmatch, glob

GLOB_FLAGS = glob.GLOBSTAR | glob.BRACE | glob.IGNORECASE | glob.DOTGLOB
NAME_FLAGS = fnmatch.BRACE | fnmatch.IGNORECASE | fnmatch.DOTMATCH


def _name_regex(names: list[bytes]) -> re.Pattern[bytes] | None:
    if not names:
        return None
    translated, _ = fnmatch.translate(names, flags=NAME_FLAGS)
    return re.compile(b"|".join(b"(?:%s)" % part for part in translated))


def _is_name(part: str) -> bool:
    return part != "" and "/" not in part and "**" not in part


class ExclusionMatcher:
    def __init__(self, patterns: Sequence[str]):
        self.patterns = list(patterns)
        basename: list[bytes] = []
        directory: list[bytes] = []
        general: list[bytes] = []
        for pattern in self.patterns:
            if pattern.startswith("**/") and pattern.endswith("/**") and _is_name(pattern[3:-3]):
                directory.append(pattern[3:-3].encode())
            elif pattern.startswith("**/") and _is_name(pattern[3:]):
                basename.append(pattern[3:].encode())
            else:
                general.append(pattern.encode())
        self._basename = _name_regex(basename)
        self._directory = _name_regex(directory)
        self._general = glob.compile(general, flags=GLOB_FLAGS) if general else None

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def excludes_file(self, path: bytes, name: bytes) -> bool:
        """Whether a file at `path` (whose basename is `name`) is excluded. Its folders were checked on the way."""
        if self._basename is not None and self._basename.match(name):
            return True
        return self._general is not None and self._general.match(path)

    def excludes_directory(self, path: bytes, name: bytes) -> bool:
        """Whether a directory is excluded as a whole, so it is not descended."""
        if self._directory is not None and self._directory.match(name):
            return True
        if self._basename is not None and self._basename.match(name):
            return True
        return self._general is not None and (self._general.match(path) or self._general.match(path + b"/"))

    def excludes_folder(self, path: bytes) -> bool:
        """Whether a folder is excluded by itself or by any folder above it (for import paths themselves)."""
        parts = path.rstrip(b"/").split(b"/")
        return any(
            self.excludes_directory(b"/".join(parts[:depth]), parts[depth - 1])
            for depth in range(2, len(parts) + 1)
        )

    def excludes_path(self, path: bytes) -> bool:
        """Whether a file's full path (e.g. from a watcher event) is excluded, its folders included."""
        folder, _, name = path.rpartition(b"/")
        return (bool(folder) and self.excludes_folder(folder)) or self.excludes_file(path, name)
