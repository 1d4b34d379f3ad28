"""Errors the dataset loaders raise, each naming the file or folder at fault and the fix."""

from __future__ import annotations

DEFAULT_FIX = (
    "pass --data-root pointing at the folder that holds the dataset, "
    "or add --download where a network is available"
)


class DataRootError(FileNotFoundError):
    """The data root is missing, or lacks the files a dataset needs there."""

    def __init__(self, path: str | None, expected: str, fix: str = DEFAULT_FIX) -> None:
        self.path = path
        self.expected = expected
        self.fix = fix
        where = "no data root was given (--data-root is required)" if path is None else f"tried {path}"
        super().__init__(f"{where}: expected {expected}; fix: {fix}")

    def __reduce__(self):  # keep the three-argument constructor picklable
        return (type(self), (self.path, self.expected, self.fix))


class DataFileError(ValueError):
    """A file inside the data root is unreadable or inconsistent (corrupt image, unknown class)."""
