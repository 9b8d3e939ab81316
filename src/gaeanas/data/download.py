"""Downloadable datasets: the registry, the cache dir, download with MD5 checksum, safe tar extraction."""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import DataError

__all__ = ["RemoteDataset", "REMOTE_DATASETS", "default_cache_dir"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteDataset:
    """Where a downloadable dataset lives, its archive's MD5, and the folder the archive unpacks to."""

    url: str
    md5: str
    folder: str


REMOTE_DATASETS: dict[str, RemoteDataset] = {
    "cifar10": RemoteDataset(url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                             md5="c58f30108f718f92721af3b95e74349a", folder="cifar-10-batches-py"),
    "cifar100": RemoteDataset(url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                              md5="eb9058c3a382ffc7106e4002c42a8d85", folder="cifar-100-python"),
}


def default_cache_dir() -> Path:
    """`$GAEANAS_CACHE`, or `~/.cache/gaeanas`."""
    env = os.environ.get("GAEANAS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gaeanas"


def _cache_root(cache_dir: str | os.PathLike | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def _ensure_remote(name: str, cache: Path) -> Path:
    """The unpacked release folder for a registered dataset, downloading it if absent."""
    entry = REMOTE_DATASETS[name]
    target = cache / entry.folder
    if target.is_dir():
        return target
    archive = cache / "downloads" / _url_filename(entry.url)
    if not archive.is_file():
        _download(entry.url, archive, entry.md5)
    _extract_folder(archive, entry.folder, target)
    archive.unlink(missing_ok=True)
    return target


def _url_filename(url: str) -> str:
    name = PurePosixPath(urllib.parse.urlsplit(url).path).name
    return name or "download"


def _download(url: str, dest: Path, md5: str) -> None:
    """Fetch `url` into `dest.part`, check its MD5, then rename it to `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    log.info("downloading %s to %s", url, dest)
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        part.unlink(missing_ok=True)
        raise DataError(f"could not download {url}: {err}") from err
    if digest.hexdigest() != md5.lower():
        part.unlink(missing_ok=True)
        raise DataError(f"checksum mismatch for {url}: expected md5 {md5}, got {digest.hexdigest()}; "
                        f"the partial file was deleted")
    os.replace(part, dest)


def _extract_folder(archive: Path, folder: str, target: Path) -> None:
    """Unpack `archive` (tar) safely and move its top-level `folder` to `target`."""
    tmp = target.parent / f".{target.name}.{os.getpid()}.unpack"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for m in members:
                _check_member(m, archive)
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, members=members, **kwargs)
        if not (tmp / folder).is_dir():
            raise DataError(f"archive {archive} does not contain the folder {folder}/")
        try:
            os.replace(tmp / folder, target)
        except OSError:
            if not target.is_dir():  # else another process unpacked it first
                raise
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"cannot unpack {archive}: {err}") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    """Reject absolute paths, `..`, links and special files."""
    name = member.name
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or os.path.isabs(name) or ".." in parts or (parts and ":" in parts[0]):
        raise DataError(f"refusing to unpack {archive}: unsafe member path {name!r}")
    if not (member.isfile() or member.isdir()):
        raise DataError(f"refusing to unpack {archive}: member {name!r} is a link or special file")
