"""Which file system a folder is on, and whether its locks hold across hosts.

The judge cache is SQLite, and the machine-wide limits are ``flock`` files. Both are safe on a
local disk. On a network or cluster file system (NFS, Lustre, GPFS, CIFS, CephFS, BeeGFS, FUSE
mounts ...) two things break: SQLite's WAL mode keeps its index in memory shared through an
mmap of the ``-shm`` file, which is not shared between hosts, so two hosts writing one WAL
database corrupt it; and byte-range locks are only coherent across hosts where the file system
implements them cluster-wide (NFS with its lock manager, GPFS, Lustre mounted with ``flock``,
CephFS), not where they are local to each host (Lustre's ``localflock``, NFS ``nolock`` or
``local_lock=``, BeeGFS by default, FUSE) or missing (Lustre without ``flock``).

The type is read from ``/proc/self/mountinfo`` (the longest mount point holding the folder).
``SIUO_JUDGE_FS_MOUNTS`` adds mount table entries that take precedence (``FOLDER=TYPE[,OPTION
...]`` separated by ``;``), for a container whose mount table does not show the real file system,
and for the tests, which pretend a folder is on NFS or Lustre and so drive the same decisions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MOUNTS_VARIABLE = "SIUO_JUDGE_FS_MOUNTS"
_MOUNTINFO = Path("/proc/self/mountinfo")

# File systems whose files other hosts may open at the same time.
_NETWORK_TYPES = frozenset(
    {
        "nfs",
        "nfs4",
        "lustre",
        "gpfs",
        "cifs",
        "smb3",
        "smbfs",
        "ceph",
        "beegfs",
        "glusterfs",
        "afs",
        "panfs",
        "wekafs",
        "pvfs2",
        "orangefs",
        "gfs2",
        "ocfs2",
        "9p",
        "davfs",
    }
)
# Network file systems whose byte-range (fcntl) locks are coherent across hosts by default.
_COHERENT_LOCKS = frozenset({"nfs", "nfs4", "gpfs", "cifs", "smb3", "smbfs", "ceph", "gfs2", "ocfs2", "wekafs"})


@dataclass(frozen=True, slots=True)
class FileSystem:
    """The file system holding a folder: its type, mount point and mount options."""

    type: str
    mount_point: str
    options: frozenset[str]

    @property
    def is_network(self) -> bool:
        """Whether other hosts may share files here (so WAL's shared memory cannot work)."""
        return self.type in _NETWORK_TYPES or self.type.startswith("fuse.") or self.type == "fuse"

    @property
    def locks_span_hosts(self) -> bool:
        """Whether a byte-range lock taken on one host is seen by every other host."""
        if not self.is_network:
            return True
        if self.type == "lustre":
            return "flock" in self.options and "localflock" not in self.options
        if self.type in ("nfs", "nfs4"):
            local_lock = next((o.split("=", 1)[1] for o in self.options if o.startswith("local_lock=")), "none")
            return "nolock" not in self.options and local_lock == "none"
        if self.type in ("cifs", "smb3", "smbfs"):
            return "nobrl" not in self.options
        return self.type in _COHERENT_LOCKS

    def describe(self) -> str:
        return f"{self.type} (mounted at {self.mount_point})"


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def _mount_table() -> list[FileSystem]:
    """This process's mounts in mount order, then the pretended ones (SIUO_JUDGE_FS_MOUNTS)."""
    table = []
    try:
        lines = _MOUNTINFO.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:  # not Linux, or /proc not mounted: only the pretended entries
        lines = []
    for line in lines:
        head, separator, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if not separator or len(fields) < 6 or not rest:
            continue
        mount_options = set(fields[5].split(","))
        if len(rest) >= 3:
            mount_options |= set(rest[2].split(","))
        table.append(FileSystem(rest[0], _unescape(fields[4]), frozenset(mount_options)))
    for entry in os.environ.get(MOUNTS_VARIABLE, "").split(";"):
        folder, _, spec = entry.partition("=")
        if folder.strip() and spec.strip():
            fs_type, *pretended_options = spec.strip().split(",")
            table.append(FileSystem(fs_type, str(Path(folder.strip()).resolve()), frozenset(pretended_options)))
    return table


def machine_local_candidates() -> list[Path]:
    """Folders that are usually on this machine's own disk or memory, in order of preference:
    $XDG_RUNTIME_DIR (when set), /dev/shm, /tmp, /var/tmp."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return [*([Path(runtime)] if runtime else []), Path("/dev/shm"), Path("/tmp"), Path("/var/tmp")]


def _real_path(folder: Path) -> Path:
    """``folder`` with the symbolic links of its existing part resolved (its missing part kept,
    so a folder to be made is placed under the mount that will hold it)."""
    existing, missing = folder.absolute(), []
    while not existing.exists() and existing != existing.parent:
        missing.append(existing.name)
        existing = existing.parent
    try:
        existing = existing.resolve()
    except OSError:
        pass
    return existing.joinpath(*reversed(missing))


def _holds(mount_point: str, folder: str) -> bool:
    return mount_point == "/" or folder == mount_point or folder.startswith(mount_point.rstrip("/") + "/")


def filesystem_of(folder: Path) -> FileSystem:
    """The file system ``folder`` is on (or would be made on).

    The mount with the longest mount point holding the folder wins; on a tie the later entry
    (a later mount hides an earlier one on the same point; a pretended entry comes last).
    Unknown (no mount table): taken as local, as before this check existed.
    """
    target = str(_real_path(folder))
    best: FileSystem | None = None
    for mount in _mount_table():
        if _holds(mount.mount_point, target) and (best is None or len(mount.mount_point) >= len(best.mount_point)):
            best = mount
    return best or FileSystem("unknown", "/", frozenset())


def local_folder(candidates: list[Path]) -> Path | None:
    """The first of ``candidates`` on a local file system where this user can write."""
    for candidate in candidates:
        if candidate.is_dir() and os.access(candidate, os.W_OK | os.X_OK) and not filesystem_of(candidate).is_network:
            return candidate
    return None
