"""Per-instance storage: a sparse disk image (disk_mb) holding an overlay's upper layer."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from forkyard.node.errors import SandboxFailed

# Instance disks are ext4 (formats a sparse file in ~10 ms). Reflink happens one level down: the
# disk *image* is cloned on the layer store (node/layers/). XFS inside was tried: every rw mount
# of a clone rewrites 2 MB of its log (stale-block clearing), against ~40-550 KB for ext4, which
# is the extra disk of each idle fork. Older XFS disks still mount (see image_filesystem).
# An instance id as a name on disk, in cgroups and in layer ids (drivers and layers check it).
INSTANCE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
XFS_MIN_MB = 300

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.syncfs.argtypes = [ctypes.c_int]
MNT_DETACH = 2


async def _run(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise SandboxFailed(f"{argv[0]} failed ({proc.returncode}): {out.decode(errors='replace')}")


def filesystem_for(disk_mb: int) -> str:
    return "ext4"


async def create_disk(image: Path, disk_mb: int) -> None:
    """Create a sparse file of disk_mb and format it (written to a temp name, renamed when done)."""
    tmp = image.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.truncate(disk_mb * 1024 * 1024)
    if filesystem_for(disk_mb) == "xfs":
        await _run("mkfs.xfs", "-q", "-f", "-m", "reflink=1", str(tmp))
    else:
        await _run(
            "mkfs.ext4",
            "-q",
            "-F",
            "-m",
            "0",
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1",
            str(tmp),
        )
    os.replace(tmp, image)


def image_filesystem(image: Path) -> str:
    """ "xfs" or "ext4", read from the image's superblock."""
    with open(image, "rb") as f:
        head = f.read(4)
        f.seek(1024 + 0x38)
        ext_magic = f.read(2)
    if head == b"XFSB":
        return "xfs"
    if ext_magic == b"\x53\xef":
        return "ext4"
    raise SandboxFailed(f"{image}: unknown filesystem")


async def mount_disk(
    image: Path, target: Path, *, readonly: bool = False, devices: bool = False
) -> None:
    """Loop-mount a disk image, nosuid and nodev (`devices`: without nodev, for a host tool
    that must make device nodes in it before any instance uses it). Clones share their
    filesystem UUID, so XFS mounts with nouuid; a read-only mount (a layer) skips log recovery:
    layers are captured frozen, hence clean."""
    target.mkdir(exist_ok=True)
    if is_mountpoint(target):
        return
    fs = image_filesystem(image)
    opts = []
    if fs == "xfs":
        opts.append("nouuid")
    else:  # no background inode-table zeroing: it would unshare a clone's blocks for nothing
        opts.append("noinit_itable")
    if readonly:
        opts.append("norecovery" if fs == "xfs" else "noload")
    try:
        # Direct ioctls: `mount -o loop` costs 50-100 ms under concurrent forks, this ~5 ms.
        await asyncio.to_thread(_loop_mount, image, target, fs, ",".join(opts), readonly, devices)
    except OSError:
        all_opts = ",".join(
            ["loop", "noatime", "nosuid", "dev" if devices else "nodev", *opts]
            + (["ro"] if readonly else [])
        )
        await _run("mount", "-t", fs, "-o", all_opts, str(image), str(target))


LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOATIME = 1024
# Everything an instance can write is mounted so on the host: a setuid file or a device node
# made inside gives nobody on the host any power.
MS_UNTRUSTED = MS_NOSUID | MS_NODEV


def _loop_mount(
    image: Path, target: Path, fs: str, data: str, readonly: bool, devices: bool = False
) -> None:
    """Attach image to a free loop device (autoclear: it detaches on umount) and mount it."""
    import struct

    ffd = os.open(image, os.O_RDONLY if readonly else os.O_RDWR)
    try:
        ctl = os.open("/dev/loop-control", os.O_RDWR)
        try:
            for _ in range(100):
                n = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
                dev = f"/dev/loop{n}"
                lfd = os.open(dev, os.O_RDONLY if readonly else os.O_RDWR)
                flags = LO_FLAGS_AUTOCLEAR | (LO_FLAGS_READ_ONLY if readonly else 0)
                # struct loop_config: fd, block_size, loop_info64 (232 bytes), reserved[8]
                info = struct.pack("=5Q4I64s64s32s2Q", 0, 0, 0, 0, 0, 0, 0, 0, flags,
                                   str(image).encode()[:63], b"", b"", 0, 0)  # fmt: skip
                cfg = struct.pack("=II", ffd, 0) + info + bytes(64)
                try:
                    fcntl.ioctl(lfd, LOOP_CONFIGURE, cfg)
                except OSError as e:
                    os.close(lfd)
                    if e.errno == errno.EBUSY:  # another mount took it first
                        continue
                    raise
                try:
                    mflags = MS_NOATIME | (MS_NOSUID if devices else MS_UNTRUSTED)
                    mflags |= MS_RDONLY if readonly else 0
                    if _libc.mount(dev.encode(), str(target).encode(), fs.encode(), mflags,
                                   data.encode()) != 0:  # fmt: skip
                        err = ctypes.get_errno()
                        raise OSError(err, f"mount {image} on {target}: {os.strerror(err)}")
                finally:
                    os.close(lfd)  # autoclear: a failed mount detaches here
                return
            raise OSError(errno.EBUSY, "no free loop device")
        finally:
            os.close(ctl)
    finally:
        os.close(ffd)


def mount_overlay(lower: Sequence[Path], upper: Path, work: Path, target: Path) -> None:
    """Mount an overlay whose lowerdir stack is `lower` (topmost first, image last)."""
    target.mkdir(exist_ok=True)
    if is_mountpoint(target):
        return
    upper.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)
    opts = f"lowerdir={':'.join(str(p) for p in lower)},upperdir={upper},workdir={work}"
    if _libc.mount(b"overlay", str(target).encode(), b"overlay", MS_UNTRUSTED, opts.encode()):
        err = ctypes.get_errno()
        raise SandboxFailed(f"overlay mount on {target} failed: {os.strerror(err)}")


def unmount(target: Path) -> None:
    """Unmount target, lazily if still busy; a path that is not mounted is fine."""
    path = str(target).encode()
    for _ in range(50):
        if _libc.umount2(path, 0) == 0:
            return
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):  # not a mount point (any more)
            return
        if err != errno.EBUSY:
            raise SandboxFailed(f"umount {target} failed: {os.strerror(err)}")
    if _libc.umount2(path, MNT_DETACH) != 0:
        raise SandboxFailed(f"lazy umount {target} failed: {os.strerror(ctypes.get_errno())}")


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below root, deepest first (the order to unmount them in)."""
    prefix = str(root.resolve())
    found: list[Path] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == prefix or mp.startswith(prefix + "/"):
                found.append(Path(mp))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def is_mountpoint(path: Path) -> bool:
    return os.path.ismount(path)


def syncfs(path: Path) -> None:
    """Flush the filesystem holding `path` to stable storage."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


# ioctls: freeze/thaw a mounted filesystem (a clean, consistent on-disk image) and clone a file.
FIFREEZE = 0xC0045877
FITHAW = 0xC0045878
FICLONE = 0x40049409
EXT4_IOC_CHECKPOINT = 0x4004662B  # _IOW('f', 43, __u32): commit and checkpoint the journal


def checkpoint_journal(mountpoint: Path) -> bool:
    """Write an ext4 filesystem's journal out to its home locations and mark it empty (Linux
    5.13+), so an image of it is clean without replay (a `noload` read-only mount sees it all).
    False when the filesystem cannot (not ext4, older kernel): the caller falls back to FIFREEZE.
    """
    fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, EXT4_IOC_CHECKPOINT, b"\0\0\0\0")
        return True
    except OSError as e:
        if e.errno in (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL):
            return False
        raise
    finally:
        os.close(fd)


def freeze_fs(mountpoint: Path) -> None:
    fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, FIFREEZE, 0)
    finally:
        os.close(fd)


def thaw_fs(mountpoint: Path) -> bool:
    """Thaw a frozen filesystem; False when it was not frozen (or is not mounted)."""
    try:
        fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        fcntl.ioctl(fd, FITHAW, 0)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def clone_file(src: Path, dst: Path, *, reflink_only: bool) -> None:
    """dst = a copy of src: a reflink clone (metadata only) where the filesystem can, otherwise a
    sparse byte copy unless reflink_only. dst must not exist; it is created read-write."""
    sfd = os.open(src, os.O_RDONLY)
    try:
        dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            try:
                fcntl.ioctl(dfd, FICLONE, sfd)
                return
            except OSError as e:
                if reflink_only or e.errno not in (
                    errno.EOPNOTSUPP,
                    errno.EXDEV,
                    errno.EINVAL,
                    errno.ENOTTY,
                ):
                    raise
            _sparse_copy(sfd, dfd)
        finally:
            os.close(dfd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dst)
        raise
    finally:
        os.close(sfd)


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(offset, length) of the file's data regions; holes are skipped."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # only a hole is left
                return
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, end - start
        pos = end


def _sparse_copy(sfd: int, dfd: int) -> None:
    size = os.fstat(sfd).st_size
    os.ftruncate(dfd, size)
    for start, length in data_extents(sfd, size):
        off, end = start, start + length
        while off < end:
            n = os.copy_file_range(sfd, dfd, end - off, off, off)
            if n == 0:
                break
            off += n


def reflink_works(directory: Path) -> bool:
    """Probe: can files in `directory` be cloned?"""
    a = directory / f".reflink-probe-{os.getpid()}"
    b = directory / f".reflink-probe-{os.getpid()}.clone"
    try:
        a.write_bytes(b"x" * 4096)
        clone_file(a, b, reflink_only=True)
        return True
    except OSError:
        return False
    finally:
        for p in (a, b):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def allocated_bytes(path: Path) -> int:
    """Bytes allocated to a file (shared reflinked extents count in full for every file)."""
    try:
        return os.stat(path).st_blocks * 512
    except FileNotFoundError:
        return 0


def disk_usage(path: Path) -> tuple[int, int]:
    """(used bytes, total bytes) of the filesystem mounted at path."""
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_blocks * st.f_frsize


def remove_tree(path: Path) -> None:
    """Delete a directory tree, refusing to cross into anything still mounted below it."""
    if mounts_under(path):
        raise SandboxFailed(f"refusing to delete {path}: still mounted")
    import shutil

    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)
