"""Pieces every dataset parser shares: fast folder scanning, the problem report, layout discovery.

A parser collects what it finds into a ``ParseReport``:
  * errors   -- the dataset cannot be used as asked (missing split folder, empty split);
  * warnings -- something was skipped (non-image files, names that do not match the pattern);
  * notes    -- conventions applied, worth knowing but not problems (junk pid -1 dropped).
``report.finish`` builds the dataset; with ``strict=True`` (the default of ``load_dataset``) it raises
one ``DatasetError`` listing every error, so a user fixes everything in one go.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from reidkit.data.images import is_image_file
from reidkit.data.records import DatasetError, ReIDDataset, Record, relabel


@dataclass
class ParsedDataset(ReIDDataset):
    """A ``ReIDDataset`` plus where it came from and how it was read.

    ``problems`` holds errors then warnings (as the contract says); ``errors`` is the fatal subset and
    ``notes`` the conventions applied (e.g. "dropped 2798 junk images (pid -1)").
    """

    root: str = ""
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class ParseReport:
    def __init__(self, name: str, root: str | os.PathLike):
        self.name, self.root = name, os.fspath(root)
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.notes: list[str] = []

    def error(self, msg: str) -> None:
        self.errors.append(msg)

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)

    def note(self, msg: str) -> None:
        self.notes.append(msg)

    def require_nonempty(self, split: str, records: Sequence[Record], where: str | os.PathLike) -> None:
        if not records:
            self.error(f"{os.fspath(where)}: {split} split is empty (no usable images)")

    def finish(self, train: list[Record], query: list[Record], gallery: list[Record], *,
               strict: bool, relabel_train: bool = True) -> ParsedDataset:
        if strict and self.errors:
            raise DatasetError(f"{self.name} at {self.root}: " + "; ".join(self.errors))
        return ParsedDataset(name=self.name, train=relabel(train) if relabel_train else train,
                             query=query, gallery=gallery, problems=self.errors + self.warnings,
                             root=self.root, errors=list(self.errors), notes=list(self.notes))


class FileList(list):
    """``list_files``'s sorted paths, plus what it could not list: ``dangling`` symlinks (their
    target is gone) and ``loops`` (symlinked folders already listed, e.g. a link to a parent)."""

    def __init__(self, paths=(), dangling=(), loops=()):
        super().__init__(paths)
        self.dangling: list[str] = list(dangling)
        self.loops: list[str] = list(loops)


def list_files(folder: str | os.PathLike, recursive: bool = False) -> FileList:
    """Paths of all regular files under ``folder``, sorted (deterministic across file systems).

    ``os.scandir`` reads the file type from the directory entry, so no file is stat-ed or opened:
    this is what lets the unlabelled reader list millions of files in seconds. Symlinked folders
    are followed once each: a folder reached again (a link to a parent, two links to one place) is
    skipped and recorded in ``.loops``, so a link loop neither repeats the pool nor ends in ELOOP.
    Links whose target is missing are recorded in ``.dangling`` (``split_images`` reports both).
    """
    out = FileList()
    top = os.fspath(folder)
    stack = [top]
    seen: set[tuple[int, int]] = set()
    try:
        st = os.stat(top)
        seen.add((st.st_dev, st.st_ino))
    except OSError:
        pass  # os.scandir below raises the error the callers expect
    while stack:
        d = stack.pop()
        files, dirs = [], []
        with os.scandir(d) as it:
            for e in it:
                try:
                    is_file = e.is_file()
                    is_dir = not is_file and e.is_dir()
                except OSError:  # ELOOP on a self-referencing link, EACCES ...
                    is_file = is_dir = False
                if is_file:
                    files.append(e.path)
                elif is_dir:
                    if not recursive:
                        continue
                    if e.is_symlink():
                        try:
                            st = os.stat(e.path)
                        except OSError:
                            out.dangling.append(e.path)
                            continue
                        key = (st.st_dev, st.st_ino)
                    else:
                        st = e.stat(follow_symlinks=False)
                        key = (st.st_dev, st.st_ino)
                    if key in seen:
                        out.loops.append(e.path)
                        continue
                    seen.add(key)
                    dirs.append(e.path)
                elif e.is_symlink():
                    out.dangling.append(e.path)
        files.sort()
        out.extend(files)
        # Push in reverse so the sorted-first sub-folder is visited first: output is fully sorted by
        # (folder, name), the same order on every machine.
        stack.extend(sorted(dirs, reverse=True))
    out.dangling.sort()
    out.loops.sort()
    return out


def split_images(paths: Iterable[str], report: ParseReport, where: str | os.PathLike) -> list[str]:
    """Keep image files; count and report the rest (``Thumbs.db``, ``.txt``, ``.DS_Store``...)."""
    images, others = [], []
    for p in paths:
        (images if is_image_file(p) else others).append(p)
    if others:
        report.warn(f"{os.fspath(where)}: skipped {len(others)} non-image file(s), "
                    f"e.g. {os.path.basename(others[0])!r}")
    dangling, loops = getattr(paths, "dangling", []), getattr(paths, "loops", [])
    if dangling:
        report.warn(f"{os.fspath(where)}: skipped {len(dangling)} dangling symlink(s) (target missing), "
                    f"e.g. {dangling[0]!r} -> {_link_target(dangling[0])!r}")
    if loops:
        report.warn(f"{os.fspath(where)}: skipped {len(loops)} symlinked folder(s) already listed "
                    f"(a link loop or a second link to one folder), e.g. {loops[0]!r} -> "
                    f"{_link_target(loops[0])!r}")
    return images


def _link_target(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


@dataclass(frozen=True)
class NamePattern:
    """A file-name regex with groups ``pid`` and ``camid`` (1-based camera numbers in the name)."""

    regex: re.Pattern
    description: str
    camid_base: int = 1

    def parse(self, name: str) -> tuple[int, int] | None:
        m = self.regex.match(name)
        if m is None:
            return None
        return int(m.group("pid")), int(m.group("camid")) - self.camid_base


# Market-1501 / DukeMTMC-reID / CUHK03-NP: "0002_c1s1_000451_03.jpg", "-1_c3s2_...", "0001_c2_f0046182.jpg".
MARKET_NAME = NamePattern(re.compile(r"(?P<pid>-?\d+)_c(?P<camid>[1-9]\d*)"),
                          "'<pid>_c<camera>...' (e.g. '0002_c1s1_000451_03.jpg')")


def parse_named_folder(folder: Path, split: str, pattern: NamePattern, report: ParseReport, *,
                       drop_junk: bool = True, drop_distractors: bool = False) -> list[Record]:
    """Records of one split folder whose file names carry pid and camera (Market-like layouts).

    ``drop_junk`` removes pid -1 (counted as a note); ``drop_distractors`` removes pid 0 (used for
    train and query: distractors belong in the gallery only).
    """
    if not folder.is_dir():
        report.error(f"{folder}: missing {split} folder")
        return []
    paths = split_images(list_files(folder), report, folder)
    records, unmatched, junk, distractors = [], [], 0, 0
    for p in paths:
        parsed = pattern.parse(os.path.basename(p))
        if parsed is None:
            unmatched.append(p)
            continue
        pid, camid = parsed
        if pid == -1 and drop_junk:
            junk += 1
            continue
        if pid == 0 and drop_distractors:
            distractors += 1
            continue
        records.append(Record(p, pid, camid))
    if unmatched:
        report.warn(f"{folder}: {len(unmatched)} file name(s) do not match {pattern.description} and "
                    f"were skipped, e.g. {os.path.basename(unmatched[0])!r}")
    if junk:
        report.note(f"{split}: dropped {junk} junk image(s) (pid -1)")
    if distractors:
        report.note(f"{split}: dropped {distractors} distractor image(s) (pid 0; kept in gallery only)")
    report.require_nonempty(split, records, folder)
    return records


def find_layout(root: Path, required: Sequence[str], candidates: Sequence[str],
                any_subfolder: bool = True) -> Path:
    """The folder under ``root`` that holds the ``required`` sub-folders.

    Users' folders differ (fast-reid wants ``Market-1501-v15.09.15/``, TransReID the flat form,
    torchreid ``market1501/Market-1501-v15.09.15/``), so try ``root`` itself, each candidate name
    one and two levels down, then (``any_subfolder``) any other direct sub-folder. A complete
    layout wins (several complete unknown sub-folders are ambiguous: an error); otherwise the
    folder with the most required sub-folders, so the error names what is missing there.
    """
    known = [root] + [root / c for c in candidates] + [root / a / b for a in candidates for b in candidates]
    best, best_count = root, -1
    for p in known:
        count = sum((p / r).is_dir() for r in required)
        if count == len(required):
            return p
        if count > best_count:
            best, best_count = p, count
    if not any_subfolder:
        return best
    try:
        others = sorted(p for p in root.iterdir() if p.is_dir() and p not in known)
    except OSError:
        others = []
    complete = [p for p in others if all((p / r).is_dir() for r in required)]
    if len(complete) > 1:
        # e.g. the synthetic benchmark's city_a/, city_b/: guessing one would silently pick a domain.
        raise DatasetError(f"{root}: several dataset folders found ({', '.join(p.name for p in complete)}); "
                           f"pass one of them as the root")
    if complete:
        return complete[0]
    for p in others:
        count = sum((p / r).is_dir() for r in required)
        if count > best_count:
            best, best_count = p, count
    return best


def check_root(root: str | os.PathLike, name: str) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise DatasetError(f"{path}: {name} root folder does not exist")
    if not path.is_dir():
        if path.suffix.lower() == ".csv":
            raise DatasetError(f"{path}: is a CSV file, not a {name} folder; for a CSV manifest "
                               "(path,pid,camid[,split]) pass --format csv (-f csv)")
        raise DatasetError(f"{path}: {name} root is not a folder")
    return path
