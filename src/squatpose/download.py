"""Stage `download`: COCO 2017 from the official site, the embedded sample, or the user's own
COCO-format dataset (`coco_dir`), in one layout.

Each way the result is a folder holding `annotations/person_keypoints_{train,val}2017.json`
and the images, `train2017/` and `val2017/` (or, for `coco_dir`, `images.json` naming the
user's image folders), so every later stage reads all sources the same way.

COCO archives are fetched with a progress bar, resumed with HTTP Range after an interruption,
checked (expected size, a readable zip whose CRCs match while extracting) and extracted into a
temporary folder that is renamed into place when complete. A marker per archive records that it
is done, so a rerun skips it; the archive itself is deleted after extraction unless
`download.keep_archives` is set, so COCO takes its ~19 GB on disk once, not twice.

`download.base_url` may name a mirror that holds the archives under COCO's paths
(`annotations/annotations_trainval2017.zip`, `zips/val2017.zip`, `zips/train2017.zip`). From the
official site each archive must have its published size; a mirror's archives are taken at the
size the mirror states (it may have repacked them), and the zips' CRCs check their content.
"""

import http.client
import json
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from squatpose.atomic import atomic_path, write_json
from squatpose.coco import raw_annotations
from squatpose.config import DataConfig, DownloadConfig
from squatpose.errors import AnnotationError, DownloadError

CHUNK = 1 << 20
OFFICIAL_URL = "http://images.cocodataset.org"


class CorruptArchive(DownloadError):
    """An archive that arrived whole but does not unpack: it is deleted."""
TIMEOUT_S = 60


@dataclass(frozen=True)
class Archive:
    """One archive of a dataset: where it lives on the server, its size, what it unpacks to."""

    url_path: str
    size: int | None  # None: whatever size the server states
    top_dirs: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.url_path.rsplit("/", 1)[-1]


COCO2017 = (
    Archive("annotations/annotations_trainval2017.zip", 252_907_541, ("annotations",)),
    Archive("zips/val2017.zip", 815_585_330, ("val2017",)),
    Archive("zips/train2017.zip", 19_336_861_798, ("train2017",)),
)


def _server_size(resp: http.client.HTTPResponse, offset: int) -> int | None:
    """The full size of the file as the server states it (Content-Range total or Content-Length)."""
    content_range = resp.headers.get("Content-Range", "")
    if resp.status == 206 and "/" in content_range and not content_range.endswith("/*"):
        return int(content_range.rsplit("/", 1)[1])
    if resp.headers.get("Content-Length"):
        return (offset if resp.status == 206 else 0) + int(resp.headers["Content-Length"])
    return None


def fetch(url: str, dest: Path, expected_size: int | None, progress: bool = True) -> Path:
    """Download `url` to `dest` (`expected_size` bytes, or None: the size the server states),
    resuming a `dest.part` left by an interrupted run. The file appears at `dest` only when complete."""
    dest = Path(dest)
    if dest.is_file() and expected_size in (None, dest.stat().st_size):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    if expected_size is not None and offset > expected_size:
        part.unlink()
        offset = 0
    headers = {"User-Agent": "squatpose"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            stated = e.headers.get("Content-Range", "").rsplit("/", 1)[-1]
            total = expected_size if expected_size is not None else int(stated) if stated.isdigit() else None
            if offset == total:
                part.rename(dest)  # the part is already whole
                return dest
            part.unlink()  # the server's file is not the one we were resuming
            raise DownloadError(f"{url}: the server's file is not the one {part} was resuming "
                                f"({e.headers.get('Content-Range', 'no size given')}); "
                                "deleted it, run again to download afresh") from None
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"{url}: cannot connect ({getattr(e, 'reason', e)})") from None
    with resp:
        if offset:
            start = resp.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
            if resp.status != 206 or start != str(offset):  # the range was ignored: start over
                offset = 0
        size = _server_size(resp, offset)
        if expected_size is None:
            if size is None:
                raise DownloadError(f"{url}: the server states no size, so a download cannot be checked "
                                    "or resumed")
            expected_size = size
        if size is not None and size != expected_size:
            raise DownloadError(f"{url}: the server's file has {size} bytes, expected {expected_size}")
        with open(part, "ab" if offset else "wb") as f, tqdm(
            total=expected_size, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=dest.name, disable=not progress,
        ) as bar:
            while True:
                try:
                    chunk = resp.read(CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    raise DownloadError(f"{url}: connection lost after {f.tell()} bytes ({e}); "
                                        "run again to resume") from None
                if not chunk:
                    break
                try:
                    f.write(chunk)
                except OSError as e:
                    raise DownloadError(f"{part}: cannot write ({e.strerror}); "
                                        "free some space and run again to resume") from None
                bar.update(len(chunk))
    got = part.stat().st_size
    if got != expected_size:
        if got > expected_size:
            part.unlink()
        raise DownloadError(f"{url}: got {got} bytes, expected {expected_size}"
                            + ("; run again to resume" if got < expected_size else ""))
    part.rename(dest)
    return dest


def extract(archive: Path, out_dir: Path, top_dirs: tuple[str, ...]) -> None:
    """Unpack the `top_dirs` of a zip into `out_dir`; nothing appears unless all of it is good."""
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(archive) as z, \
                tempfile.TemporaryDirectory(prefix=".extract-", dir=out_dir) as tmp:
            members = [m for m in z.namelist() if m.split("/", 1)[0] in top_dirs]
            if not members:
                raise CorruptArchive(f"{archive}: holds none of {', '.join(top_dirs)}")
            for member in tqdm(members, desc=f"extract {archive.name}", unit="file",
                               disable=len(members) < 1000):
                z.extract(member, tmp)  # reading checks each member's CRC
            for top in top_dirs:
                target = out_dir / top
                if target.exists():
                    shutil.rmtree(target)
                (Path(tmp) / top).rename(target)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError) as e:
        raise CorruptArchive(f"{archive}: not a readable zip ({e})") from None
    except OSError as e:
        raise DownloadError(f"{archive}: cannot extract into {out_dir} ({e.strerror}); "
                            "free some space and run again") from None


def _marker(out_dir: Path, archive: Archive) -> Path:
    return out_dir / f".done-{archive.name}.json"


def download_archives(base_url: str, archives: tuple[Archive, ...], out_dir: str | Path,
                      archives_dir: str | Path, keep_archives: bool = False,
                      progress: bool = True) -> None:
    """Fetch, check and extract each archive that is not already marked done in `out_dir`."""
    out_dir, archives_dir = Path(out_dir), Path(archives_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for a in archives:
        marker = _marker(out_dir, a)
        if marker.is_file() and all((out_dir / t).is_dir() for t in a.top_dirs):
            continue
        path = fetch(f"{base_url.rstrip('/')}/{a.url_path}", archives_dir / a.name, a.size, progress)
        try:
            extract(path, out_dir, a.top_dirs)
        except CorruptArchive as e:
            path.unlink()  # a bad copy: the next run downloads it afresh
            raise DownloadError(f"{e}; deleted it, run again to download it afresh") from None
        marker.write_text(json.dumps({"archive": a.name, "size": path.stat().st_size}) + "\n")
        if not keep_archives:
            path.unlink()


def provide_sample(sample_dir: str | Path, out_dir: str | Path) -> None:
    """Copy the embedded sample to `out_dir`, replacing what was there in one rename."""
    sample_dir = Path(sample_dir)
    for name in ("annotations", "train2017", "val2017"):
        if not (sample_dir / name).is_dir():
            raise DownloadError(f"{sample_dir}: the embedded sample has no '{name}' folder")
    with atomic_path(out_dir) as tmp:
        shutil.copytree(sample_dir, tmp)


def provide_coco_dir(data: DataConfig, out_dir: str | Path) -> None:
    """Make a user's COCO-format dataset (`data.train_*`, `data.val_*`) the pipeline's raw data.

    Both annotation files are validated (a one-line error naming the file, the field and the
    setting) and copied in as `annotations/person_keypoints_<split>2017.json`; the images stay
    where they are and `images.json` records their folders as given (relative to the repository
    root, or absolute), so the next stages read them in place.
    """
    from squatpose.coco import IMAGES_MANIFEST, load_coco

    sources = {"train": (data.train_annotations, data.train_images), "val": (data.val_annotations, data.val_images)}
    for split, (ann, images) in sources.items():
        try:
            load_coco(ann)
        except AnnotationError as e:
            raise AnnotationError(f"{e} (params.yaml: data.{split}_annotations)") from None
        if not Path(images).is_dir():
            raise DownloadError(f"{images}: not a folder (params.yaml: data.{split}_images)")
    with atomic_path(out_dir) as tmp:
        (tmp / "annotations").mkdir(parents=True)
        for split, (ann, _) in sources.items():
            shutil.copyfile(ann, raw_annotations(tmp, split))
        write_json(tmp / IMAGES_MANIFEST, {split: images for split, (_, images) in sources.items()})


def run(data: DataConfig, download: DownloadConfig, out_dir: str | Path, progress: bool = True) -> None:
    """The `download` stage for `data.source`."""
    if data.source == "sample":
        provide_sample(data.sample_dir, out_dir)
    elif data.source == "coco_dir":
        provide_coco_dir(data, out_dir)
    else:
        official = download.base_url.rstrip("/") == OFFICIAL_URL
        archives = COCO2017 if official else tuple(replace(a, size=None) for a in COCO2017)
        download_archives(download.base_url, archives, out_dir, download.archives_dir,
                          download.keep_archives, progress)
