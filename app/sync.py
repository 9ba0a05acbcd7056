"""Code sync: ship only what changed in the project to a directory on a host, over any Transport.

1. **Scan** the project root (`scan_project`): ignore rules from every `.gitignore` at any
   depth (pathspec, git's precedence: the deepest file that matches decides, and nothing below
   an ignored directory comes back), then the built-in excludes (`.git`, `__pycache__`,
   `*.pyc`, `.venv`, `node_modules`, checkpoint and runs dirs, ...), then the `exclude`
   patterns, then `include` patterns that bring back what a `.gitignore` left out. Symlinks
   that resolve inside the project are kept as links; symlinks pointing outside it are never
   followed (listed as skipped). Each file gets size, mtime, mode and sha256 — hashed only when
   its size or mtime changed since the previous scan (a local cache file).
2. **Plan** (`plan_sync`): read the manifest stored on the host
   (`<remote_dir>/.runctl/sync-manifest.tsv`) and compare: upload what differs in content,
   mode or link target; delete what the manifest has and the project no longer has. Files on
   the host that runctl never put there are never deleted.
3. **Apply** (`apply_sync`): (a) a small control tar writes `.runctl/sync-pending` (every path
   about to change) and the deletion list, and the host deletes; (b) one gzip-compressed tar
   stream of the changed files is unpacked on the host with `tar -xpzf -` (modes kept); its last
   member holds the manifest rows of what was sent, merged (awk) into the old manifest minus
   every touched path, and renamed into place only after tar succeeded: a one-file change
   sends one row, not the whole manifest. The manifest
   is written last, so an interrupted sync is simply run again: the old manifest plus the
   pending list make the next plan ship everything that may be half-written.

The host needs only `sh`, `tar` and `gzip`. No textual here; blocking I/O, cancellable, with a
progress callback, so the dashboard runs it in a thread worker.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
import tarfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from providers.base import ProviderError, Transport
from providers.streaming import CommandCancelled, cancel_check, stream_command

#: Never shipped, whatever the .gitignore files say: directories by name at any depth, files
#: by name or suffix, and runctl's own state dir at the root. (Name checks, not patterns: the
#: scan asks this for every entry, and a set lookup is ~40x faster than pathspec here.)
BUILTIN_EXCLUDED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "__pycache__",
        ".venv",
        "node_modules",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".ipynb_checkpoints",
    }
)
BUILTIN_EXCLUDED_SUFFIXES = (".pyc", ".pyo")
BUILTIN_EXCLUDED_FILES = frozenset({".DS_Store"})
#: Directories that hold training output rather than code (the checkpoint and runs dirs): a bare
#: name is excluded at any depth, a path with a slash only there (relative to the root).
DEFAULT_OUTPUT_DIRS: tuple[str, ...] = ("checkpoints", "runs")

STATE_DIR = ".runctl"
MANIFEST = f"{STATE_DIR}/sync-manifest.tsv"  # size, mode, sha256, link, path; tab-separated
ROWS = f"{STATE_DIR}/sync-rows"  # manifest rows of the files this sync sent
PENDING = f"{STATE_DIR}/sync-pending"
DELETIONS = f"{STATE_DIR}/sync-deletions"
RMDIRS = f"{STATE_DIR}/sync-rmdirs"
MANIFEST_VERSION = 1
CHUNK = 1 << 20
CHANGED_DURING_SYNC = "changed-during-sync"  # a manifest hash that matches nothing: resend
SAMPLE_BYTES = 4 * 1024  # files this big are sampled to decide whether to deflate them


class SyncError(ProviderError):
    """The sync failed; the message says what to do. The host keeps its previous manifest."""


class SyncCancelled(SyncError):
    """Cancelled by the user; running the sync again finishes it."""


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file (or symlink) of the project as the manifest records it."""

    path: str  # POSIX, relative to the project root
    size: int
    mtime_ns: int
    mode: int  # permission bits
    sha256: str
    link: str | None = None  # a symlink's target (relative), else None

    def same_content(self, other: FileEntry | None) -> bool:
        return (
            other is not None
            and self.size == other.size
            and self.mode == other.mode
            and self.sha256 == other.sha256
            and self.link == other.link
        )

    def manifest_line(self, sha256: str | None = None) -> str:
        sha256 = sha256 or self.sha256
        return f"{self.size}\t{self.mode:o}\t{sha256}\t{self.link or ''}\t{self.path}"


@dataclass(slots=True)
class LocalTree:
    root: Path
    files: dict[str, FileEntry]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    scanned: int = 0  # directory entries looked at
    hashed: int = 0  # files whose content was read this time
    cache_hits: int = 0  # files whose hash came from the local cache

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files.values())


@dataclass(slots=True)
class SyncPlan:
    remote_dir: str
    tree: LocalTree
    upload: list[FileEntry]
    delete: list[str]
    remote_had_manifest: bool
    rmdirs: list[str] = field(default_factory=list)  # dirs left empty by deletions

    @property
    def bytes_to_send(self) -> int:
        return sum(entry.size for entry in self.upload)

    @property
    def nothing_to_do(self) -> bool:
        return not self.upload and not self.delete


@dataclass(slots=True)
class SyncProgress:
    """What the UI shows while a sync runs."""

    files_done: int
    files_total: int
    bytes_done: int  # file bytes packed so far
    bytes_total: int
    bytes_sent: int  # compressed bytes handed to the transport
    elapsed_s: float

    @property
    def rate_bps(self) -> float:
        return self.bytes_done / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(slots=True)
class SyncResult:
    plan: SyncPlan
    bytes_sent: int
    seconds: float
    dry_run: bool

    def to_json(self, host: str) -> dict:
        """The shape `runctl-tui sync --json` prints (paths relative to the project root)."""
        return {
            "host": host,
            "remote_dir": self.plan.remote_dir,
            "uploaded": [entry.path for entry in self.plan.upload],
            "deleted": list(self.plan.delete),
            "bytes_sent": self.plan.bytes_to_send if self.dry_run else self.bytes_sent,
            "files_scanned": len(self.plan.tree.files),
            "dry_run": self.dry_run,
            "seconds": round(self.seconds, 3),
        }


ProgressCallback = Callable[[SyncProgress], None]


# -- where things live ----------------------------------------------------------------------------


def remote_project_dir(
    home: str, project_name: str, remote_root: str | None = None, remote_dir: str | None = None
) -> str:
    """`remote_dir` if configured (relative = under home), else `<remote_root or ~/runctl>/<name>`."""

    def absolute(path: str) -> str:
        if path == "~" or path.startswith("~/"):
            path = path[2:]
        return path if path.startswith("/") else f"{home.rstrip('/')}/{path}".rstrip("/")

    if remote_dir:
        return absolute(remote_dir)
    return f"{absolute(remote_root or 'runctl')}/{project_name}"


def default_cache_path(cache_dir: Path, project_root: Path, host: str, remote_dir: str) -> Path:
    """The local hash cache for one (project, host, remote dir)."""
    key = hashlib.sha1(f"{project_root.resolve()}\0{host}\0{remote_dir}".encode()).hexdigest()
    return cache_dir / "sync" / f"{key[:16]}.json"


# -- scanning -------------------------------------------------------------------------------------


def _spec(lines: Iterable[str]) -> pathspec.GitIgnoreSpec | None:
    spec = pathspec.GitIgnoreSpec.from_lines(list(lines))
    return spec if len(spec) else None


class IgnoreRules:
    """Decides, path by path, what the scan skips (see the module docstring for the order)."""

    def __init__(
        self,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        output_dirs: Sequence[str] = DEFAULT_OUTPUT_DIRS,
    ) -> None:
        dirs = [d.strip("/") for d in output_dirs if d.strip("/")]
        self.excluded_dir_names = BUILTIN_EXCLUDED_DIRS | {d for d in dirs if "/" not in d}
        self.excluded_dir_paths = {STATE_DIR} | {d for d in dirs if "/" in d}
        self.exclude = _spec(exclude)
        self.include = _spec(include)

    def builtin_excluded(self, name: str, rel: str, is_dir: bool) -> bool:
        if is_dir:
            return name in self.excluded_dir_names or rel in self.excluded_dir_paths
        return name in BUILTIN_EXCLUDED_FILES or name.endswith(BUILTIN_EXCLUDED_SUFFIXES)

    @staticmethod
    def gitignored(rel: str, gitignores: list[tuple[str, pathspec.GitIgnoreSpec]]) -> bool:
        for base, spec in reversed(gitignores):  # the deepest .gitignore that matches decides
            result = spec.check_file(rel[len(base) :])
            if result.include is not None:
                return result.include
        return False

    def user_excluded(self, rel: str) -> bool:
        return self.exclude is not None and bool(self.exclude.match_file(rel))

    def included(self, rel: str) -> bool:
        return self.include is not None and bool(self.include.match_file(rel))


def _sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def load_cache(path: Path | None) -> dict[str, list]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data.get("files", {}) if isinstance(data, dict) else {}


def save_cache(path: Path | None, tree: LocalTree) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = {
        e.path: [e.size, e.mtime_ns, e.sha256]
        for e in tree.files.values()
        if not e.link and e.sha256 and e.sha256 != CHANGED_DURING_SYNC
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": MANIFEST_VERSION, "files": rows}))
    os.replace(tmp, path)


def scan_project(
    root: Path,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    output_dirs: Sequence[str] = DEFAULT_OUTPUT_DIRS,
    cache: dict[str, list] | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
    worth_hashing: Callable[[str, int], bool] | None = None,
) -> LocalTree:
    """Every file the sync would ship, with its manifest entry (see the module docstring).

    `worth_hashing(path, size)` False means the file will be sent whatever its hash (the
    host has no file of that size there): its sha256 is left empty here and computed while
    it is sent, so a first sync reads each file once, not twice."""
    root = Path(root).resolve()
    rules = IgnoreRules(include, exclude, output_dirs)
    cache = cache or {}
    is_cancelled = cancel_check(cancel)
    tree = LocalTree(root, {})
    root_text = str(root)

    def walk(abs_dir: str, rel_dir: str, gitignores: list, parent_ignored: bool) -> None:
        if is_cancelled():
            raise SyncCancelled("sync cancelled while scanning the project")
        gitignore = os.path.join(abs_dir, ".gitignore")
        if os.path.isfile(gitignore):
            try:
                with open(gitignore, encoding="utf-8", errors="replace") as handle:
                    spec = _spec(handle.read().splitlines())
            except OSError:
                spec = None
            if spec is not None:
                gitignores = [*gitignores, (rel_dir, spec)]
        try:
            with os.scandir(abs_dir) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError as err:
            tree.skipped.append((rel_dir or ".", f"cannot list: {err.strerror}"))
            return
        for entry in entries:
            tree.scanned += 1
            rel = f"{rel_dir}{entry.name}"
            if "\n" in rel or "\r" in rel or "\t" in rel:
                tree.skipped.append((rel, "a line break or tab in the name"))
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished while we looked
            is_link = stat.S_ISLNK(info.st_mode)
            is_dir = stat.S_ISDIR(info.st_mode)
            probe = f"{rel}/" if is_dir else rel
            if rules.builtin_excluded(entry.name, rel, is_dir):
                continue
            ignored = parent_ignored or rules.gitignored(probe, gitignores)
            ignored = ignored or rules.user_excluded(probe)
            if rules.included(probe):
                ignored = False
            if is_dir:
                # Below an ignored directory only `include` patterns can bring files back.
                if not ignored or rules.include is not None:
                    walk(entry.path, f"{rel}/", gitignores, ignored)
                continue
            if ignored:
                continue
            if is_link:
                _add_symlink(tree, root_text, entry.path, rel, info)
            elif stat.S_ISREG(info.st_mode):
                _add_file(tree, cache, entry.path, rel, info, worth_hashing)

    walk(root_text, "", [], False)
    return tree


def _add_file(
    tree: LocalTree,
    cache: dict,
    abs_path: str,
    rel: str,
    info: os.stat_result,
    worth_hashing: Callable[[str, int], bool] | None,
) -> None:
    cached = cache.get(rel)
    if cached and cached[0] == info.st_size and cached[1] == info.st_mtime_ns:
        digest = cached[2]
        tree.cache_hits += 1
    elif worth_hashing is not None and not worth_hashing(rel, info.st_size):
        digest = ""  # sent anyway; hashed on the way
    else:
        try:
            digest = _sha256_of(abs_path)
        except OSError as err:
            tree.skipped.append((rel, f"cannot read: {err.strerror}"))
            return
        tree.hashed += 1
    mode = stat.S_IMODE(info.st_mode)
    tree.files[rel] = FileEntry(rel, info.st_size, info.st_mtime_ns, mode, digest)


def _add_symlink(tree: LocalTree, root: str, abs_path: str, rel: str, info: os.stat_result) -> None:
    target = os.readlink(abs_path)
    resolved = os.path.realpath(abs_path)
    inside = resolved == root or resolved.startswith(root + os.sep)
    if not inside or not os.path.exists(resolved):
        why = "symlink to outside the project" if not inside else "dangling symlink"
        tree.skipped.append((rel, f"{why} (not followed)"))
        return
    if os.path.isabs(target):  # make it work wherever the project lands on the host
        target = os.path.relpath(resolved, os.path.dirname(abs_path))
    digest = hashlib.sha256(b"link:" + target.encode("utf-8", "surrogateescape")).hexdigest()
    entry = FileEntry(rel, 0, info.st_mtime_ns, 0o777, digest, link=target)
    tree.files[rel] = entry


# -- planning -------------------------------------------------------------------------------------


def read_remote_state(
    transport: Transport, remote_dir: str
) -> tuple[dict[str, FileEntry], set[str], bool]:
    """(manifest entries, pending paths, whether a manifest exists) from the host, in one
    command, gzip-compressed on the way (a 10,000-file manifest is about 1 MB)."""
    script = (
        'cd "$1" 2>/dev/null || exit 0; '
        f"{{ if [ -f {MANIFEST} ]; then cat {MANIFEST}; fi; printf '\\000'; "
        f"if [ -f {PENDING} ]; then cat {PENDING}; fi; }} | gzip -1 -c"
    )
    result = transport.run(["sh", "-c", script, "sh", remote_dir], timeout=120)
    if not result.ok:
        raise SyncError(
            f"cannot read the sync manifest on {transport.label}: {result.describe_failure()}"
        )
    try:
        raw = zlib.decompress(result.stdout, 47) if result.stdout else b""  # 47: gzip or zlib
    except zlib.error:
        raw = b""
    manifest_text, _, pending_text = raw.partition(b"\0")
    pending = {line for line in pending_text.decode("utf-8", "surrogateescape").split("\n") if line}
    entries: dict[str, FileEntry] = {}
    for line in manifest_text.decode("utf-8", "surrogateescape").split("\n"):
        fields = line.split("\t", 4)
        if len(fields) != 5:
            continue  # a torn or foreign line: that file is simply sent again
        size, mode, sha, link, path = fields
        try:
            entries[path] = FileEntry(path, int(size), 0, int(mode, 8), sha, link or None)
        except ValueError:
            continue
    return entries, pending, bool(manifest_text.strip())


def make_plan(
    tree: LocalTree,
    remote: dict[str, FileEntry],
    pending: set[str],
    remote_dir: str,
    remote_had_manifest: bool = True,
) -> SyncPlan:
    upload = [
        entry
        for path, entry in sorted(tree.files.items())
        if path in pending or not entry.sha256 or not entry.same_content(remote.get(path))
    ]
    delete = sorted((set(remote) | pending) - set(tree.files))
    local_dirs = _parent_dirs(tree.files)
    emptied = _parent_dirs(delete) - local_dirs
    rmdirs = sorted(emptied, key=lambda d: (-d.count("/"), d))  # deepest first
    return SyncPlan(remote_dir, tree, upload, delete, remote_had_manifest, rmdirs)


def _parent_dirs(paths: Iterable[str]) -> set[str]:
    dirs: set[str] = set()
    for path in paths:
        parent = path.rpartition("/")[0]
        while parent and parent not in dirs:
            dirs.add(parent)
            parent = parent.rpartition("/")[0]
    return dirs


def plan_sync(
    transport: Transport,
    project_root: Path,
    remote_dir: str,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    output_dirs: Sequence[str] = DEFAULT_OUTPUT_DIRS,
    cache_path: Path | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
) -> SyncPlan:
    """Read the host's manifest, scan the project, compare; sends nothing."""
    remote, pending, had_manifest = read_remote_state(transport, remote_dir)

    def worth_hashing(path: str, size: int) -> bool:
        entry = remote.get(path)
        return entry is not None and entry.size == size and path not in pending

    cache = load_cache(cache_path)
    tree = scan_project(
        project_root,
        include=include,
        exclude=exclude,
        output_dirs=output_dirs,
        cache=cache,
        cancel=cancel,
        worth_hashing=worth_hashing,
    )
    if tree.hashed or tree.cache_hits != len(cache):  # skip rewriting an unchanged cache
        save_cache(cache_path, tree)
    return make_plan(tree, remote, pending, remote_dir, had_manifest)


# -- the tar stream -------------------------------------------------------------------------------


def _tar_header(name: str, size: int, mode: int, mtime: float, link: str | None = None) -> bytes:
    """A tar header: plain ustar when the names fit (fast, the common case), else PAX."""
    raw = name.encode("utf-8", "surrogateescape")
    target = (link or "").encode("utf-8", "surrogateescape")
    size = 0 if link is not None else size
    prefix = b""
    if len(raw) > 100:
        cut = raw.rfind(b"/", 0, 156)
        if cut > 0 and len(raw) - cut - 1 <= 100:
            prefix, raw = raw[:cut], raw[cut + 1 :]
    if len(raw) <= 100 and len(target) <= 100 and size < 8**11 and (prefix + raw).isascii():
        header = b"".join(
            (
                raw.ljust(100, b"\0"),
                b"%07o\0" % (mode & 0o7777),
                b"0000000\0",  # uid
                b"0000000\0",  # gid
                b"%011o\0" % size,
                b"%011o\0" % max(0, int(mtime)),
                b"        ",  # checksum, computed below over these spaces
                tarfile.SYMTYPE if link is not None else tarfile.REGTYPE,
                target.ljust(100, b"\0"),
                b"ustar\x0000",
                b"\0" * 80,  # uname, gname, devmajor, devminor
                prefix.ljust(155, b"\0"),
                b"\0" * 12,
            )
        )
        checksum = b"%06o\0 " % sum(header)
        return header[:148] + checksum + header[156:]
    info = tarfile.TarInfo(name)
    info.size = 0 if link is not None else size
    info.mode = mode
    info.mtime = int(mtime)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if link is not None:
        info.type = tarfile.SYMTYPE
        info.linkname = link
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _padding(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


def _control_member(name: str, lines: Iterable[str]) -> bytes:
    data = "".join(f"{line}\n" for line in lines).encode("utf-8", "surrogateescape")
    return _tar_header(name, len(data), 0o600, time.time()) + data + _padding(len(data))


class _TarStream:
    """Builds a gzip tar stream file by file; yields compressed chunks as they fill."""

    def __init__(
        self,
        root: Path,
        plan: SyncPlan,
        compresslevel: int,
        on_progress: ProgressCallback | None,
        is_cancelled: Callable[[], bool],
    ) -> None:
        self.root = root
        self.plan = plan
        self.compresslevel = compresslevel
        self.level = compresslevel
        self.compressor = zlib.compressobj(compresslevel, zlib.DEFLATED, 31)  # 31 = gzip
        self.on_progress = on_progress
        self.is_cancelled = is_cancelled
        self.sent_sha: dict[str, str] = {}  # what really went out, when it differs from the plan
        self.bytes_sent = 0
        self.files_done = 0
        self.bytes_done = 0
        self.started = time.monotonic()
        self._last_report = 0.0

    def _out(self, data: bytes) -> bytes:
        packed = self.compressor.compress(data)
        self.bytes_sent += len(packed)
        return packed

    def _choose_level(self, entry: FileEntry, handle) -> bytes:
        """Store incompressible files (weights, archives, images) instead of deflating them:
        the stream becomes a new gzip member at the new level (`gzip -d` and `tar -z` read
        concatenated members as one stream). Deflating random bytes costs far more CPU than
        it saves wire bytes on any link a GPU box has."""
        level = self.compresslevel
        if entry.size >= SAMPLE_BYTES and self.compresslevel > 0:
            sample = handle.read(SAMPLE_BYTES)
            handle.seek(0)
            if len(zlib.compress(sample, 1)) > 0.9 * len(sample):
                level = 0
        return self._level(level)

    def _level(self, level: int) -> bytes:
        if level == self.level:
            return b""
        tail = self.compressor.flush()
        self.bytes_sent += len(tail)
        self.level = level
        self.compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
        return tail

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.on_progress is None or (not force and now - self._last_report < 0.1):
            return
        self._last_report = now
        self.on_progress(
            SyncProgress(
                self.files_done,
                len(self.plan.upload),
                self.bytes_done,
                self.plan.bytes_to_send,
                self.bytes_sent,
                now - self.started,
            )
        )

    def chunks(self) -> Iterator[bytes]:
        pending: list[bytes] = []
        pending_size = 0
        for entry in self.plan.upload:
            if self.is_cancelled():
                raise SyncCancelled("sync cancelled; run it again to finish")
            for piece in self._member(entry):
                if piece:
                    pending.append(piece)
                    pending_size += len(piece)
                if pending_size >= 256 * 1024:
                    yield b"".join(pending)
                    pending, pending_size = [], 0
            self.files_done += 1
            self.report()
        pending.append(self._level(self.compresslevel))  # the rows are text: deflate them
        rows = "".join(
            entry.manifest_line(self.sent_sha.get(entry.path)) + "\n" for entry in self.plan.upload
        ).encode("utf-8", "surrogateescape")
        pending.append(self._out(_tar_header(ROWS, len(rows), 0o600, time.time())))
        pending.append(self._out(rows + _padding(len(rows))))
        pending.append(self._out(b"\0" * tarfile.BLOCKSIZE * 2))
        tail = self.compressor.flush()
        self.bytes_sent += len(tail)
        pending.append(tail)
        yield b"".join(pending)
        self.report(force=True)

    def _member(self, entry: FileEntry) -> Iterator[bytes]:
        abs_path = os.path.join(self.root, entry.path)
        if entry.link is not None:
            yield self._out(_tar_header(entry.path, 0, 0o777, entry.mtime_ns / 1e9, entry.link))
            return
        sent = 0
        digest = None if entry.sha256 else hashlib.sha256()  # not hashed by the scan: do it now
        try:
            handle = open(abs_path, "rb")  # noqa: SIM115 - closed below, read in a loop
        except OSError:
            handle = None  # deleted since the scan: send it empty, ship it again next time
        try:
            if handle is not None:
                yield self._choose_level(entry, handle)
            yield self._out(_tar_header(entry.path, entry.size, entry.mode, entry.mtime_ns / 1e9))
            while handle is not None and sent < entry.size:
                if self.is_cancelled():
                    raise SyncCancelled("sync cancelled; run it again to finish")
                block = handle.read(min(CHUNK, entry.size - sent))
                if not block:
                    break
                sent += len(block)
                self.bytes_done += len(block)
                if digest is not None:
                    digest.update(block)
                yield self._out(block)
                self.report()
            # Changed since the scan hashed it? Then the manifest must not claim that hash.
            after = os.fstat(handle.fileno()) if handle is not None else None
        finally:
            if handle is not None:
                handle.close()
        if sent < entry.size:  # shrank while we read it: pad, and mark it for the next sync
            yield self._out(b"\0" * (entry.size - sent))
        if (
            sent < entry.size
            or after is None
            or after.st_mtime_ns != entry.mtime_ns
            or after.st_size != entry.size
        ):
            self.sent_sha[entry.path] = CHANGED_DURING_SYNC
        elif digest is not None:
            self.sent_sha[entry.path] = digest.hexdigest()
        yield self._out(_padding(entry.size))


# -- applying -------------------------------------------------------------------------------------

_PREPARE = (
    'mkdir -p -- "$1" && cd "$1" && mkdir -p .runctl && tar -xf - && '
    f"tr '\\n' '\\000' < {DELETIONS} | xargs -0 rm -f -- && "
    f'while IFS= read -r d; do rmdir -- "$d" 2>/dev/null || true; done < {RMDIRS}'
)
# The new manifest: the old one without every path this sync touched, plus the rows of what
# it sent ("$2" = reset starts from none); renamed into place only after tar succeeded.
_UNPACK = (
    f'cd "$1" && tar -xpzf - && {{ [ "$2" = merge ] || rm -f -- {MANIFEST}; }} && '
    f"touch {MANIFEST} && "
    "awk -F '\t' 'FILENAME == ARGV[1] { drop[$0]; next } !($5 in drop)' "
    f"{PENDING} {MANIFEST} > {MANIFEST}.new && cat {ROWS} >> {MANIFEST}.new && "
    f"mv -f -- {MANIFEST}.new {MANIFEST} && rm -f -- {PENDING} {DELETIONS} {RMDIRS} {ROWS}"
)


def apply_sync(
    transport: Transport,
    plan: SyncPlan,
    *,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
    compresslevel: int = 1,
    timeout: float | None = None,
) -> int:
    """Make the host match the plan; returns the bytes sent. Nothing to do sends nothing."""
    if plan.nothing_to_do:
        return 0
    is_cancelled = cancel_check(cancel)
    prepare = (
        _control_member(PENDING, [e.path for e in plan.upload] + plan.delete)
        + _control_member(DELETIONS, plan.delete)
        + _control_member(RMDIRS, plan.rmdirs)
        + b"\0" * tarfile.BLOCKSIZE * 2
    )
    run = _RemoteStep(transport, plan.remote_dir, is_cancelled, timeout)
    run(_PREPARE, [prepare], "deleting")
    stream = _TarStream(plan.tree.root, plan, compresslevel, on_progress, is_cancelled)
    # Without a readable manifest on the host, the one written now starts from scratch.
    run(_UNPACK, stream.chunks(), "unpacking", "merge" if plan.remote_had_manifest else "reset")
    for path, sha in stream.sent_sha.items():  # what the host's manifest now says
        plan.tree.files[path] = dataclasses.replace(plan.tree.files[path], sha256=sha)
    return len(prepare) + stream.bytes_sent


@dataclass(slots=True)
class _RemoteStep:
    """Runs one apply script in the remote project dir with a stream on its stdin."""

    transport: Transport
    remote_dir: str
    is_cancelled: Callable[[], bool]
    timeout: float | None

    def __call__(self, script: str, chunks: Iterable[bytes], step: str, *args: str) -> None:
        argv = ["sh", "-c", script, "sh", self.remote_dir, *args]
        try:
            result = stream_command(
                self.transport,
                argv,
                stdin_chunks=chunks,
                cancel=self.is_cancelled,
                timeout=self.timeout,
            )
        except CommandCancelled:
            raise SyncCancelled("sync cancelled; run it again to finish") from None
        if self.is_cancelled():
            raise SyncCancelled("sync cancelled; run it again to finish")
        if not result.ok:
            raise SyncError(
                f"sync to {self.transport.label}:{self.remote_dir} failed while {step} the "
                f"files: {result.describe_failure()}. The host keeps its previous state; "
                "run sync again."
            )


def sync_project(
    transport: Transport,
    project_root: Path,
    remote_dir: str,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    output_dirs: Sequence[str] = DEFAULT_OUTPUT_DIRS,
    cache_path: Path | None = None,
    dry_run: bool = False,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
    compresslevel: int = 1,
) -> SyncResult:
    """Plan, then (unless `dry_run`) apply. The one call the dashboard and the CLI make."""
    started = time.monotonic()
    plan = plan_sync(
        transport,
        project_root,
        remote_dir,
        include=include,
        exclude=exclude,
        output_dirs=output_dirs,
        cache_path=cache_path,
        cancel=cancel,
    )
    sent = 0
    if not dry_run:
        sent = apply_sync(
            transport, plan, on_progress=on_progress, cancel=cancel, compresslevel=compresslevel
        )
        if plan.upload:
            save_cache(cache_path, plan.tree)  # with the hashes computed while sending
    return SyncResult(plan, sent, time.monotonic() - started, dry_run)


def describe_plan(plan: SyncPlan, limit: int = 20) -> list[str]:
    """Human lines for a dry-run or a confirmation: what is sent and deleted."""
    lines = [
        f"{len(plan.upload)} file(s) to send ({_size(plan.bytes_to_send)}), "
        f"{len(plan.delete)} to delete, {len(plan.tree.files)} in the project, "
        f"to {plan.remote_dir}"
    ]
    lines += [f"  + {entry.path} ({_size(entry.size)})" for entry in plan.upload[:limit]]
    if len(plan.upload) > limit:
        lines.append(f"  ... and {len(plan.upload) - limit} more to send")
    lines += [f"  - {path}" for path in plan.delete[:limit]]
    if len(plan.delete) > limit:
        lines.append(f"  ... and {len(plan.delete) - limit} more to delete")
    lines += [f"  ! skipped {path}: {why}" for path, why in plan.tree.skipped[:limit]]
    return lines


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
