"""Read a small text file from a place anyone may point the daemon at: capped in size, UTF-8 or refused.

A config key naming /dev/zero or a log file must not fill memory, and every failure is one line that
names the file (never its content: a secret file's bytes are the secret).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError, UserError

MAX_SECRET_FILE_BYTES = 4096
"""Largest password or token file read."""


def _size(n: int) -> str:
    return f"{n // 1024} KiB" if n >= 1024 and n % 1024 == 0 else f"{n} bytes"


def read_capped_text(path: str | Path, what: str, max_bytes: int,
                     error: type[UserError] = ConfigError, secret: bool = False) -> str:
    """The UTF-8 text of `path`, at most `max_bytes`; any failure is one `error` line naming `what`.

    `secret`: a decoding error does not say where (the position would tell about the content).
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror or e}") from None
    if len(raw) > max_bytes:
        raise error(f"{what} {path} is larger than {_size(max_bytes)}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        where = "" if secret else f" (byte {e.start})"
        raise error(f"{what} {path} is not UTF-8 text{where}") from None


def read_secret_line(key: str, configured: str) -> tuple[str, Path]:
    """The first line (stripped) of the secret file config key `key` names, and the file's path.

    `configured` may hold ${VARIABLES} (a unit's ${CREDENTIALS_DIRECTORY}, systemd LoadCredential=)
    and ~. A file that others may read is logged as a warning by the caller's logger.
    """
    path = Path(os.path.expandvars(configured)).expanduser()
    text = read_capped_text(path, key, MAX_SECRET_FILE_BYTES, secret=True)
    lines = text.splitlines()
    return (lines[0].strip() if lines else ""), path


def readable_by_everyone(path: Path) -> bool:
    """Whether the file's mode lets every user read it (False when it cannot be checked)."""
    try:
        return bool(path.stat().st_mode & 0o004)
    except OSError:
        return False
