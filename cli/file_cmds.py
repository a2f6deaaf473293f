"""``file`` commands: put, get, list, glob, inspect, diff, delete, copy.

Data never sits whole in memory: local files are streamed by the client
(``put_file_from_path``), stdin and downloads move in chunks, and listings
print as they arrive. One ``put file`` invocation is one ``modify_file``
stream, hence one commit (pachctl's rule, even with several ``-f``).
``s3://`` sources are streamed by the client from any S3 server (endpoint
and keys from ``--s3-endpoint``/``--s3-region`` and the AWS variables);
the daemon fetches nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import re
import sys
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from cli import lineage, refs
from cli import progress as progress_
from cli.common import (
    CLIError,
    Context,
    UsageError,
    add_output_flags,
    api_errors,
    noun_parser,
    printer,
)
from cli.output import Printer, enum_name, human_size, timestamp

FILE_HEADER = ("NAME", "TYPE", "SIZE")
DIFF_HEADER = ("OP", "SIZE", "NAME")

_CHUNK = 1 << 20  # stdin / download chunk size
# Content diffs are for reading, so only files small enough to read make them.
_MAX_DIFF_BYTES = 1 << 20
_MAX_CONTENT_DIFFS = 100
_GLOB_CHARS = re.compile(r"[*?\[\]{}!()@+^]")


def _file_row(p: Printer, fi: Any) -> list[str]:
    kind = enum_name(fi, "file_type").lower()
    return [fi.file.path, kind, human_size(fi.size_bytes)]


def _file_block(p: Printer, fi: Any) -> Iterator[tuple[str, str]]:
    yield "Path", fi.file.path
    yield "Commit", f"{fi.file.commit.repo}@{fi.file.commit.id}"
    if fi.datum or fi.file.datum:
        yield "Datum", fi.datum or fi.file.datum
    yield "Type", enum_name(fi, "file_type").lower()
    yield "Size", human_size(fi.size_bytes)
    if fi.hash:
        yield "Hash", fi.hash
    if fi.HasField("committed"):
        yield "Committed", p.when(timestamp(fi, "committed"))


def _is_dir(fi: Any) -> bool:
    return enum_name(fi, "file_type") == "DIR"


# --- put file -----------------------------------------------------------------


def _walk_dir(root: str) -> Iterator[str]:
    """Relative paths of the files below ``root``, in a stable (sorted) order, lazily."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield os.path.relpath(os.path.join(dirpath, name), root)


def _stdin_chunks() -> Iterator[bytes]:
    stream = sys.stdin.buffer
    while chunk := stream.read(_CHUNK):
        yield chunk


def _is_url(src: str) -> bool:
    return src.startswith(("http://", "https://"))


def _url_chunks(url: str) -> Iterator[bytes]:
    """Stream an http(s) URL's body (pachctl's tutorials put files from URLs)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            while chunk := resp.read(_CHUNK):
                yield chunk
    except (urllib.error.URLError, TimeoutError) as e:
        reason = getattr(e, "reason", e)
        raise CLIError(f"cannot download {url}: {reason}") from None


def _url_name(url: str) -> str:
    """The local-path-like part of a URL, so target path rules apply to it."""
    import urllib.parse

    path = urllib.parse.urlsplit(url).path
    return path if path.strip("/") else "/index"


def _is_s3(src: str) -> bool:
    return src.lower().startswith("s3://")


def _s3_name(url: str) -> str:
    """The path-like name of an ``s3://BUCKET/KEY`` source (its key, or the
    bucket for a whole bucket), so the target path rules apply to it."""
    rest = url[len("s3://"):].split("?", 1)[0]
    bucket, _, key = rest.partition("/")
    key = urllib.parse.unquote(key).strip("/")
    return "/" + (key or bucket)


def _counted(chunks: Iterable[bytes], progress: progress_.Transfer | None) -> Iterator[bytes]:
    for chunk in chunks:
        if progress is not None:
            progress.advance(len(chunk))
        yield chunk


def _s3_config(args: argparse.Namespace) -> Any:
    """The S3 flags of ``put file``; the URL's ``?endpoint=`` and then the AWS
    variables fill what they leave unset (``S3Config.for_url``)."""
    from tusk.client import S3Config

    return S3Config(endpoint=args.s3_endpoint or "", region=args.s3_region or "")


def _check_sources(sources: list[str], recursive: bool) -> None:
    """Fail on a missing source before anything is uploaded (no stray empty commit)."""
    if sources.count("-") > 1:
        raise UsageError("stdin (-f -) can be given only once")
    for src in sources:
        if src == "-" or _is_url(src):
            continue
        if _is_s3(src):
            if not src[len("s3://"):].split("/", 1)[0].split("?", 1)[0]:
                raise UsageError(
                    f"{src!r} names no bucket: write s3://BUCKET/KEY (s3://BUCKET/PREFIX "
                    "with -r)")
            continue
        if "://" in src:
            raise CLIError(
                f"cannot read {src}: only local files, - (stdin), http(s) URLs and s3:// URLs "
                "are supported; download it first"
            )
        if not os.path.exists(src):
            raise CLIError(f"cannot read {src}: no such file or directory")
        if os.path.isdir(src) and not recursive:
            raise CLIError(f"{src} is a directory: use -r to upload a directory's files")


def run_put_file(ctx: Context, args: argparse.Namespace) -> int:
    target = refs.parse_file(args.file_ref)
    sources: list[str] = args.files
    if not sources:
        raise UsageError("no source given: use -f FILE (or -f - for stdin)")
    _check_sources(sources, args.recursive)
    n = len(sources)
    path = target.put_path
    # Compute every target that doesn't need a directory walk now, so a
    # bad combination (stdin without a path) fails before the upload starts.
    plan: list[tuple[str, str | None]] = []  # (source, target or None for a dir)
    for src in sources:
        if _is_url(src):
            plan.append((src, refs.target_path(_url_name(src), path, n, args.full_path)))
        elif _is_s3(src):
            plan.append((src, None if args.recursive else
                         refs.target_path(_s3_name(src), path, n, args.full_path)))
        elif src != "-" and os.path.isdir(src):
            plan.append((src, None))
        else:
            plan.append((src, refs.target_path(src, path, n, args.full_path)))
    mode = progress_.choose(args.progress)
    progress = None
    if mode != "off":
        total_bytes, total_files = _local_totals(sources)
        progress = progress_.Transfer("put file", mode, total_bytes, total_files)
    s3 = _s3_config(args) if any(_is_s3(src) for src in sources) else None
    with contextlib.ExitStack() as stack:
        if progress is not None:
            # Closed before the commit's errors reach the user, so the message
            # is not drawn over by the bar.
            stack.callback(progress.close)
        _put_sources(ctx, args, target.repo, target.ref, path, n, plan, s3, progress)
    return 0


def _local_totals(sources: list[str]) -> tuple[int | None, int | None]:
    """Bytes and files of ``sources`` if all are local (None for what is unknown:
    stdin, URLs, S3). Directories are walked once more for it, counting only."""
    nbytes = nfiles = 0
    for src in sources:
        if src == "-" or _is_url(src) or _is_s3(src):
            return None, None
        if os.path.isdir(src):
            for rel in _walk_dir(src):
                nbytes += os.path.getsize(os.path.join(src, rel))
                nfiles += 1
        else:
            nbytes += os.path.getsize(src)
            nfiles += 1
    return nbytes, nfiles


def _put_sources(ctx: Context, args: argparse.Namespace, repo: str, ref: str, path: str | None,
                 n: int, plan: list[tuple[str, str | None]], s3: Any,
                 progress: progress_.Transfer | None) -> None:
    with ctx.client().modify_file(repo, ref) as writer:
        for src, dst in plan:
            if _is_s3(src):
                if dst is None:
                    root = refs.dir_target_root(_s3_name(src), path, n, args.full_path)
                    writer.put_files_from_s3(root, src, s3, append=args.append,
                                             progress=progress)
                else:
                    writer.put_file_from_s3(dst, src, s3, append=args.append,
                                            progress=progress)
            elif dst is None:
                root = refs.dir_target_root(src, path, n, args.full_path)
                for rel, repo_path in refs.dir_targets(root, _walk_dir(src)):
                    local = os.path.join(src, rel)
                    writer.put_file_from_path(repo_path, local, append=args.append,
                                              progress=progress)
            elif src == "-":
                writer.put_file(dst, _counted(_stdin_chunks(), progress), append=args.append)
                if progress is not None:
                    progress.file_done(dst)
            elif _is_url(src):
                writer.put_file(dst, _counted(_url_chunks(src), progress), append=args.append)
                if progress is not None:
                    progress.file_done(dst)
            else:
                writer.put_file_from_path(dst, src, append=args.append, progress=progress)


# --- get file -----------------------------------------------------------------


def _writer(fd: int) -> Callable[[memoryview], None]:
    """write(view) that writes all of ``view`` to ``fd``."""
    def write(view: memoryview) -> None:
        while view:
            view = view[os.write(fd, view):]
    return write


def _download(client: Any, repo: str, ref: str, path: str, dest: str, offset: int = 0,
              progress: progress_.Transfer | None = None) -> None:
    """Stream one repo file into a local file (written to a temp name, then renamed)."""
    parent = os.path.dirname(dest)
    if parent:
        os.makedirs(parent, exist_ok=True)
    tmp = f"{dest}.tusk-part"
    try:
        with open(tmp, "wb") as f:
            client.read_file_into(repo, ref, path, _counting(_writer(f.fileno()), progress),
                                  offset=offset)
        os.replace(tmp, dest)
        if progress is not None:
            progress.file_done(path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _counting(write: Callable[[memoryview], None], progress: progress_.Transfer | None
              ) -> Callable[[memoryview], None]:
    """``write`` that also tells ``progress`` how many bytes went by."""
    if progress is None:
        return write

    def counted(view: memoryview) -> None:
        write(view)
        progress.advance(len(view))
    return counted


def _get_tree(client: Any, repo: str, ref: str, path: str, dest: str,
              progress: progress_.Transfer | None = None) -> int:
    """Download every file at or below ``path`` (or every glob match) into ``dest``."""
    if _GLOB_CHARS.search(path):
        entries: Iterable[Any] = client.glob_file(repo, ref, path)
        # Each match keeps its full repo path under dest.
        base = "/"
    else:
        entries = client.walk_file(repo, ref, path)
        base = path
    count = 0
    for fi in entries:
        if _is_dir(fi):
            if _GLOB_CHARS.search(path):
                # A matched directory: download its whole subtree.
                count += _get_tree(client, repo, ref, fi.file.path,
                                   _local(dest, "/", fi.file.path), progress)
            continue
        if fi.file.path == base:  # the root of the request is a single file
            local = dest
        else:
            local = _local(dest, base, fi.file.path)
        _download(client, repo, ref, fi.file.path, local, progress=progress)
        count += 1
    if count == 0:
        os.makedirs(dest, exist_ok=True)
    return count


def _local(dest: str, base: str, repo_path: str) -> str:
    """Local path of ``repo_path`` (below ``base``) inside ``dest``."""
    rel = repo_path.removeprefix(base).strip("/")
    return os.path.join(dest, *rel.split("/")) if rel else dest


def _get_progress(client: Any, args: argparse.Namespace, repo: str, ref: str, path: str
                  ) -> progress_.Transfer | None:
    """The progress of a ``get file``: bytes of a known total (``inspect_file``:
    a file's size, or a directory's, which is the sum of its files'), files
    counted for ``-r``; a glob's total is unknown until it is walked."""
    # File content printed on the terminal and a bar on it would mix.
    quiet = not args.output and sys.stdout.isatty()
    mode = progress_.choose(args.progress, quiet=quiet)
    if mode == "off":
        return None
    total: int | None = None
    if not (args.recursive and _GLOB_CHARS.search(path)):
        try:
            total = max(client.inspect_file(repo, ref, path).size_bytes - args.offset, 0)
        except api_errors().TuskError:
            total = None  # the read itself reports what is wrong
    return progress_.Transfer("get file", mode, total_bytes=total)


def run_get_file(ctx: Context, args: argparse.Namespace) -> int:
    fref = refs.parse_file(args.file_ref)
    path = fref.path or "/"
    client = ctx.client()
    if args.recursive and not args.output:
        raise UsageError("get file -r needs a local directory: add -o DIR")
    progress = _get_progress(client, args, fref.repo, fref.ref, path)
    with contextlib.ExitStack() as stack:
        if progress is not None:
            stack.callback(progress.close)
        _get(client, args, fref.repo, fref.ref, path, progress)
    return 0


def _get(client: Any, args: argparse.Namespace, repo: str, ref: str, path: str,
         progress: progress_.Transfer | None) -> None:
    if args.recursive:
        _get_tree(client, repo, ref, path, args.output, progress)
        return
    if args.output:
        _download(client, repo, ref, path, args.output, offset=args.offset, progress=progress)
        return
    sys.stdout.flush()
    out = sys.stdout.buffer
    out.flush()
    # Bytes go to the binary stream (its descriptor when it has one) so any
    # file content survives unchanged.
    try:
        write = _writer(out.fileno())
    except (AttributeError, OSError, ValueError):  # a captured stream (tests)
        def write(view: memoryview) -> None:
            out.write(view)
    client.read_file_into(repo, ref, path, _counting(write, progress), offset=args.offset)
    out.flush()
    if progress is not None:
        progress.file_done(path)


# --- list / glob / inspect ----------------------------------------------------


def run_list_file(ctx: Context, args: argparse.Namespace) -> int:
    p = printer(args)
    fref = refs.parse_file(args.file_ref)
    items = ctx.client().list_file(fref.repo, fref.ref, fref.path or "/")
    p.items(items, FILE_HEADER, lambda m: _file_row(p, m))
    return 0


def run_glob_file(ctx: Context, args: argparse.Namespace) -> int:
    p = printer(args)
    fref = refs.parse_file(args.pattern)
    # The pattern goes to the server unchanged (no path cleaning of globs
    # beyond what parse_file does, which keeps every glob character).
    items = ctx.client().glob_file(fref.repo, fref.ref, fref.path or "/")
    p.items(items, FILE_HEADER, lambda m: _file_row(p, m))
    return 0


def run_inspect_file(ctx: Context, args: argparse.Namespace) -> int:
    if args.lineage or args.downstream:
        return lineage.run_file_lineage(ctx, args)
    p = printer(args)
    fref = refs.parse_file(args.file_ref)
    client = ctx.client()
    fi = client.inspect_file(fref.repo, fref.ref, fref.path or "/")
    # Lineage beyond commits: the datum that wrote this file and the input
    # files (with their commits) it was computed from.
    datum, d = fi.datum or fi.file.datum, None
    if datum:
        from cli.common import api_errors

        try:
            d = client.inspect_datum(fi.file.commit.repo, fi.file.commit.id, datum)
        except api_errors().NotFound:
            pass  # the job's records are gone (pipeline deleted): the file info stands alone
    if args.raw:
        p.data(lineage.raw_file_info(fi, d))
        return 0
    p.block(fi, lambda m: _file_block(p, m))
    for f in d.files if d is not None else ():
        print(f"Datum Input: {f.input} = {f.repo}@{f.commit}:{f.path}")
    return 0


# --- diff file ----------------------------------------------------------------


def _read_small(client: Any, fi: Any) -> list[str] | None:
    """The lines of a small text file, or None if it is big or binary."""
    if fi.size_bytes > _MAX_DIFF_BYTES:
        return None
    c = fi.file.commit
    data = b"".join(client.get_file(c.repo, c.id, fi.file.path))
    try:
        return data.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return None


def _content_diff(client: Any, new: Any | None, old: Any | None, out: IO[str]) -> None:
    new_lines = _read_small(client, new) if new is not None else []
    old_lines = _read_small(client, old) if old is not None else []
    either = new if new is not None else old
    assert either is not None  # a diff entry has at least one side
    name = str(either.file.path)
    if new_lines is None or old_lines is None:
        out.write(f"Binary or large file {name} differs\n")
        return
    old_name = f"a{name}" if old is not None else "/dev/null"
    new_name = f"b{name}" if new is not None else "/dev/null"
    for line in difflib.unified_diff(old_lines, new_lines, old_name, new_name):
        out.write(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")


def run_diff_file(ctx: Context, args: argparse.Namespace) -> int:
    p = printer(args)
    new = refs.parse_file(args.new)
    old = refs.parse_file(args.old) if args.old else None
    client = ctx.client()
    pairs = client.diff_file(
        new.repo,
        new.ref,
        new.path or "/",
        old_repo=old.repo if old else None,
        old_ref=old.ref if old else None,
        old_path=(old.path or "/") if old else None,
        shallow=args.shallow,
    )
    if p.raw:
        for resp in pairs:
            p.message(resp)
        return 0
    out = sys.stdout
    changed: list[tuple[Any | None, Any | None]] = []
    skipped = 0

    def rows() -> Iterator[Any]:
        nonlocal skipped
        for resp in pairs:
            n = resp.new_file if resp.HasField("new_file") else None
            o = resp.old_file if resp.HasField("old_file") else None
            is_file = (n is not None and not _is_dir(n)) or (o is not None and not _is_dir(o))
            if is_file and not args.name_only:
                # Keep only small handles (FileInfo messages), capped, for the
                # content diffs printed after the table.
                if len(changed) < _MAX_CONTENT_DIFFS:
                    changed.append((n, o))
                else:
                    skipped += 1
            if n is not None:
                yield ("+", n)
            if o is not None:
                yield ("-", o)

    if args.name_only:
        for op, fi in rows():
            out.write(f"{op} {fi.file.path}\n")
        out.flush()
        return 0
    p.items(rows(), DIFF_HEADER, lambda r: [r[0], human_size(r[1].size_bytes), r[1].file.path])
    for n, o in changed:
        if n is not None and o is not None and n.hash and n.hash == o.hash:
            continue
        out.write("\n")
        _content_diff(client, n, o, out)
    if skipped:
        out.write(f"\n({skipped} more changed files not shown as content diffs)\n")
    out.flush()
    return 0


# --- delete / copy ------------------------------------------------------------


def run_delete_file(ctx: Context, args: argparse.Namespace) -> int:
    fref = refs.parse_file(args.file_ref)
    if fref.path is None:
        raise UsageError(
            f'"{args.file_ref}" names no path: use REPO@BRANCH:PATH (and -r for a directory)'
        )
    client = ctx.client()
    if not args.recursive and fref.path != "/":
        # pachctl's -r guards against deleting a whole tree by accident.
        try:
            fi: Any = client.inspect_file(fref.repo, fref.ref, fref.path)
        except api_errors().FileNotFound:
            fi = None  # deleting a missing path is a no-op (pachctl's rule)
        if fi is not None and _is_dir(fi):
            raise CLIError(
                f"{fref.path} is a directory: use -r to delete it and everything under it"
            )
    elif fref.path == "/" and not args.recursive:
        raise CLIError("deleting / removes every file: use -r to confirm")
    with client.modify_file(fref.repo, fref.ref) as writer:
        writer.delete_file(fref.path)
    return 0


def run_copy_file(ctx: Context, args: argparse.Namespace) -> int:
    src = refs.parse_file(args.src)
    dst = refs.parse_file(args.dst)
    if dst.path is None:
        raise UsageError(f'"{args.dst}" names no destination path: use REPO@BRANCH:PATH')
    with ctx.client().modify_file(dst.repo, dst.ref) as writer:
        writer.copy_file(src.repo, src.ref, src.path or "/", dst.path, append=args.append)
    return 0


# --- registration -------------------------------------------------------------


def register(verbs: dict[str, Any]) -> None:
    """Add the file commands to the verbs' subparsers."""
    p = noun_parser(
        verbs["put"],
        "file",
        run_put_file,
        "put local files (or stdin) into a repo",
        "Put files into REPO@BRANCH-OR-COMMIT[:PATH]; one invocation makes one commit. "
        "Without PATH each source lands at the root under its basename; with one source, "
        "PATH is its exact path (PATH/ puts it under PATH/); with several sources PATH is "
        "a prefix; -r puts a directory's files under PATH.",
    )
    p.add_argument("file_ref", metavar="REPO@BRANCH-OR-COMMIT[:PATH]")
    p.add_argument(
        "-f",
        "--file",
        dest="files",
        action="append",
        default=[],
        metavar="SRC",
        help="a local file or directory, an http(s) URL, s3://BUCKET/KEY (with -r: "
        "s3://BUCKET/PREFIX), or - for stdin (repeatable)",
    )
    p.add_argument("-r", "--recursive", action="store_true", help="upload directories' files")
    p.add_argument(
        "-a",
        "--append",
        action="store_true",
        help="append to existing files instead of overwriting",
    )
    p.add_argument(
        "--full-path",
        action="store_true",
        help="name files by their whole source path instead of their basename",
    )
    progress_.add_progress_flags(p, "files and bytes uploaded so far")
    p.add_argument(
        "--s3-endpoint",
        metavar="URL",
        help="S3 server of s3:// sources, e.g. http://127.0.0.1:8333 (default: "
        "?endpoint= in the URL, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS); keys "
        "come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN",
    )
    p.add_argument(
        "--s3-region",
        metavar="REGION",
        help="region of s3:// sources (default: AWS_REGION, AWS_DEFAULT_REGION)",
    )

    p = noun_parser(verbs["get"], "file", run_get_file, "print a file (or download a tree with -r)")
    p.add_argument("file_ref", metavar="REPO@BRANCH-OR-COMMIT:PATH")
    p.add_argument("-r", "--recursive", action="store_true", help="download a directory (needs -o)")
    p.add_argument(
        "-o", "--output", metavar="PATH", help="write to this local file (directory with -r)"
    )
    p.add_argument("--offset", type=int, default=0, help="skip this many bytes")
    progress_.add_progress_flags(p, "bytes (and files) downloaded so far")

    p = noun_parser(verbs["list"], "file", run_list_file, "list a directory's files")
    p.add_argument("file_ref", metavar="REPO@BRANCH-OR-COMMIT[:DIR]")
    add_output_flags(p)

    p = noun_parser(verbs["glob"], "file", run_glob_file, "list the files matching a glob pattern")
    p.add_argument("pattern", metavar="REPO@BRANCH-OR-COMMIT:PATTERN")
    add_output_flags(p)

    p = noun_parser(verbs["inspect"], "file", run_inspect_file, "show a file's details")
    p.add_argument("file_ref", metavar="REPO@BRANCH-OR-COMMIT:PATH")
    add_output_flags(p)
    lineage.add_lineage_flags(p)

    p = noun_parser(
        verbs["diff"],
        "file",
        run_diff_file,
        "show what changed between two versions of a path",
        "Compare NEW with OLD (default: the same path in NEW's parent commit).",
    )
    p.add_argument("new", metavar="NEW")
    p.add_argument("old", nargs="?", metavar="OLD")
    p.add_argument("-s", "--shallow", action="store_true", help="don't descend into subdirectories")
    p.add_argument("--name-only", action="store_true", help="print only the changed paths")
    add_output_flags(p, timestamps=False)

    p = noun_parser(verbs["delete"], "file", run_delete_file, "delete a file or directory")
    p.add_argument("file_ref", metavar="REPO@BRANCH-OR-COMMIT:PATH")
    p.add_argument(
        "-r", "--recursive", action="store_true", help="delete a directory and its contents"
    )

    p = noun_parser(
        verbs["copy"], "file", run_copy_file, "copy files between commits (by reference)"
    )
    p.add_argument("src", metavar="SRC-REPO@REF:PATH")
    p.add_argument("dst", metavar="DST-REPO@BRANCH:PATH")
    p.add_argument("-a", "--append", action="store_true", help="append instead of overwriting")
