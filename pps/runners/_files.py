"""Host-side file plumbing shared by the runners (staging inputs, collecting outputs)."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import uuid

from pps.runners import OUTPUT_CAP


def link_tree(src: str, dst: str) -> None:
    """Make ``dst`` a copy of the directory ``src``, hard-linking files when possible.

    Hard links cost one metadata write per file whatever its size, which is what
    keeps staging a large datum cheap; they are safe here because every runner
    presents the staged tree read-only. Across filesystems (EXDEV) or where links
    are refused (EPERM, e.g. protected_hardlinks), files are copied instead.
    Symbolic links are recreated as they are (a link to a host path will not
    resolve inside a container).
    """
    if not os.path.isdir(src):
        raise FileNotFoundError(errno.ENOENT, "input directory does not exist", src)
    can_link = True
    os.makedirs(dst, exist_ok=True)
    for root, dirs, files in os.walk(src):
        rel = os.path.relpath(root, src)
        target_root = dst if rel == "." else os.path.join(dst, rel)
        for d in dirs:
            s = os.path.join(root, d)
            t = os.path.join(target_root, d)
            if os.path.islink(s):
                os.symlink(os.readlink(s), t)
            else:
                os.mkdir(t)
        for f in files:
            s = os.path.join(root, f)
            t = os.path.join(target_root, f)
            if os.path.islink(s):
                os.symlink(os.readlink(s), t)
                continue
            if can_link:
                try:
                    os.link(s, t)
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                        raise
                    can_link = False
            shutil.copy2(s, t)


def clear_dir(path: str) -> None:
    """Remove everything inside ``path`` but keep ``path`` itself (a mount point).

    User code may still run (a background process) and swap a directory in
    there for a symlink at any moment: every level is opened with
    ``O_NOFOLLOW`` relative to its parent's descriptor, so nothing outside
    ``path`` is ever removed. One scandir per directory: a datum's few files
    cost a few system calls.

    User code may also nest directories deeper than Python recurses (about
    1000 levels): a directory ``_MAX_DEPTH`` levels down is renamed up into
    ``path`` and cleared from there, so no tree makes this fail (and leave a
    worker's scratch that nothing can empty again)."""
    fd = os.open(path, _DIR)
    try:
        lifted: list[str] = []
        _clear_at(fd, fd, 0, lifted)
        while lifted:
            _remove_entry(fd, lifted.pop(), True, fd, 1, lifted)
    finally:
        os.close(fd)


#: Directory levels clear_dir descends before it moves a deeper one up.
_MAX_DEPTH = 64


def _clear_at(fd: int, top: int, depth: int, lifted: list[str]) -> None:
    with os.scandir(fd) as it:
        entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
    for name, is_dir in entries:
        _remove_entry(fd, name, is_dir, top, depth, lifted)


def _remove_entry(fd: int, name: str, is_dir: bool, top: int, depth: int,
                  lifted: list[str]) -> None:
    if not is_dir:
        os.unlink(name, dir_fd=fd)
        return
    if depth >= _MAX_DEPTH:
        up = f".tusk-deep-{uuid.uuid4().hex}"
        os.rename(name, up, src_dir_fd=fd, dst_dir_fd=top)
        lifted.append(up)
        return
    try:
        sub = os.open(name, _DIR, dir_fd=fd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        os.unlink(name, dir_fd=fd)  # swapped for a link or a file meanwhile
        return
    try:
        _clear_at(sub, top, depth + 1, lifted)
    finally:
        os.close(sub)
    os.rmdir(name, dir_fd=fd)


def remove_tree(path: str) -> None:
    """Remove ``path`` and everything under it, if it exists (:func:`clear_dir`)."""
    try:
        clear_dir(path)
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except NotADirectoryError:
        os.unlink(path)


def move_children(src: str, dst: str) -> None:
    """Move every entry of ``src`` into ``dst`` (created if missing), leaving ``src`` empty.

    A rename per top-level entry when both are on one filesystem, so collecting
    a datum's output costs nothing per byte; a copy otherwise. A directory of
    ``src`` whose name is a real directory in ``dst`` already (the datum's S3
    gateway wrote there: ``s3_out``) is merged into it; any other name that
    exists in both fails.
    """
    os.makedirs(dst, exist_ok=True)
    with os.scandir(src) as it:
        entries = list(it)
    for entry in entries:
        target = os.path.join(dst, entry.name)
        if os.path.lexists(target):
            if entry.is_dir(follow_symlinks=False) and os.path.isdir(target) \
                    and not os.path.islink(target):
                _merge_dir(src, entry.name, target)
                continue
            raise FileExistsError(
                errno.EEXIST, "output directory is not empty: refusing to overwrite", target
            )
        try:
            os.rename(entry.path, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            if entry.is_dir(follow_symlinks=False):
                shutil.copytree(entry.path, target, symlinks=True)
                shutil.rmtree(entry.path)
            else:
                shutil.copy2(entry.path, target, follow_symlinks=False)
                os.unlink(entry.path)


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _merge_dir(parent: str, name: str, dst: str) -> None:
    """Move the entries of directory ``parent/name`` into the real directory ``dst``.

    ``parent/name`` was written by user code that may still run and swap a
    directory for a link: each level is opened with ``O_NOFOLLOW`` relative to
    its parent's descriptor and renamed from through it, so no host path
    outside it is ever touched.
    """
    pfd = os.open(parent, _DIR)
    try:
        _merge_at(pfd, name, dst)
    finally:
        os.close(pfd)


def _merge_at(pfd: int, name: str, dst: str) -> None:
    fd = os.open(name, _DIR, dir_fd=pfd)
    try:
        with os.scandir(fd) as it:
            names = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        for n, is_dir in names:
            target = os.path.join(dst, n)
            if os.path.lexists(target):
                if is_dir and os.path.isdir(target) and not os.path.islink(target):
                    _merge_at(fd, n, target)
                    continue
                raise FileExistsError(
                    errno.EEXIST, "written both to /pfs/out and through S3 (bucket out)", target)
            os.rename(n, target, src_dir_fd=fd)  # EXDEV is raised: no copy fallback here
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=pfd)


def read_tail(path: str, cap: int = OUTPUT_CAP) -> bytes:
    """The last ``cap`` bytes of the regular file ``path`` (empty when it does
    not exist).

    The file may sit where user code can write (the Docker agent's io/), so
    a link there is not followed and anything but a regular file reads as
    empty: a datum must not get a host file into its logs by replacing its
    stdout with a symlink.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return b""
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symlink
            return b""
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
            return b""
        # Up to the size seen now: a process left running by the datum may
        # still append, and reading to an end that keeps moving would never
        # return (nor stop growing).
        end = st.st_size
        start = max(0, end - cap)
        parts = []
        while start < end:
            piece = os.pread(fd, end - start, start)
            if not piece:
                break
            parts.append(piece)
            start += len(piece)
        return b"".join(parts)[-cap:]
    finally:
        os.close(fd)
