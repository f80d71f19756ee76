"""File handling of the done-marker node, standard library only (tested without ComfyUI).

The contract with cinepipe (engine/src/stages/await_marker.rs reads it):
- frames are `<output_dir>/<prefix>_<5-digit counter>_.png`, named as ComfyUI's SaveImage names
  them, so one glob (`<prefix>_*.png`) finds the frames of either node;
- each frame is written to a hidden temp name, fsync'd, then renamed into place, so a frame
  that matches the glob is always complete;
- `<output_dir>/<prefix>.done` is written last, atomically (`.done.tmp`, flush + fsync,
  `os.replace`, fsync of the folder), holding
  `{"Timestamp": "<ISO-8601 UTC>", "FrameCount": n, "Files": [basenames]}`.
  `Files` is extra information; a reader needs only `Timestamp` and `FrameCount`.
"""

import datetime
import json
import os

MARKER_SUFFIX = ".done"
CONTRACT_VERSION = 1


class PrefixError(ValueError):
    """A filename prefix that would write outside ComfyUI's output folder."""


def check_prefix(prefix):
    """Returns the prefix with '/' separators, or raises PrefixError.

    Refused: empty prefixes, absolute paths (POSIX or Windows drive), any `..` component, and
    prefixes ending in a separator (no file name). SaveImage itself only refuses `..` at run
    time, after the graph has been accepted; refusing here lets VALIDATE_INPUTS reject the
    prompt with a 400 before anything runs.
    """
    if not isinstance(prefix, str) or prefix.strip() == "":
        raise PrefixError("filename_prefix is empty")
    if "\x00" in prefix:
        raise PrefixError("filename_prefix contains a NUL byte")
    norm = prefix.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        raise PrefixError(f"filename_prefix {prefix!r} is absolute; it must be relative to the output folder")
    parts = norm.split("/")
    if any(p == ".." for p in parts):
        raise PrefixError(f"filename_prefix {prefix!r} contains '..'; it must stay inside the output folder")
    if parts[-1] in ("", "."):
        raise PrefixError(f"filename_prefix {prefix!r} has no file name after its folder")
    return norm


def frame_name(basename, counter):
    """SaveImage's file name for one frame: `<basename>_00001_.png`."""
    return f"{basename}_{counter:05}_.png"


def fsync_dir(path):
    """Makes renames in `path` durable; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_file_atomic(path, write):
    """Calls `write(file)` on `<dir>/.<name>.tmp`, fsyncs it and renames it to `path`.

    A reader of `path` sees the old file or the whole new one, never part of one. The temp name
    starts with a dot and ends in `.tmp`, so no frame glob matches it.
    """
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def marker_path(folder, basename, suffix=MARKER_SUFFIX):
    return os.path.join(folder, basename + suffix)


def write_marker(folder, basename, files, now=None, suffix=MARKER_SUFFIX):
    """Writes `<folder>/<basename><suffix>` atomically and returns its path.

    The temp file is `<basename><suffix>.tmp` (the documented `.done.tmp`), flushed and
    fsync'd before `os.replace`; the folder is fsync'd after, so the marker survives a crash
    once this returns. Call it only after every frame in `files` is renamed into place.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    body = {
        "Timestamp": now.isoformat().replace("+00:00", "Z"),
        "FrameCount": len(files),
        "Files": list(files),
        "ContractVersion": CONTRACT_VERSION,
    }
    final = marker_path(folder, basename, suffix)
    tmp = final + ".tmp"
    data = (json.dumps(body) + "\n").encode("utf-8")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    fsync_dir(folder)
    return final
