"""Write a file atomically, with the permissions an ordinary ``open(path, 'wb')`` would give it.

Standard library only: the converter scripts under ``tools/model_converters/`` load this file by
path, without importing the package or the toolboxes.
"""
import os
import stat
import tempfile


def _umask() -> int:
    """The process's umask, read without changing it where ``/proc`` says it (Linux)."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(mask)
    return mask


def atomic_write_bytes(data: bytes, filepath: str, prefix: str = '.tmp_') -> None:
    """Write ``data`` to ``filepath`` through a temporary file in the same folder, flushed to
    disk and renamed over the target: a reader sees the old file or the complete new one.

    The new file gets the mode of the file it replaces, or ``0o666`` minus the umask for a new
    one (``mkstemp`` alone would leave it ``0o600``, unreadable by colleagues on a shared server).
    """
    folder = os.path.dirname(os.path.abspath(filepath))
    os.makedirs(folder, exist_ok=True)
    try:
        mode = stat.S_IMODE(os.stat(filepath).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix='.part')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
