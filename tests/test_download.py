"""The download stage against a real HTTP server on 127.0.0.1 serving zips the test builds."""

import dataclasses
import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from squatpose.config import DataConfig, DownloadConfig
from squatpose.download import Archive, download_archives, extract, fetch, provide_sample, run
from squatpose.errors import DownloadError
from tests.conftest import REPO, SAMPLE, ann_path


class Server:
    """Serves `files` (path -> bytes) with HTTP Range support; can cut one response short."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[tuple[str, str | None]] = []
        self.cut_after: dict[str, int] = {}  # path -> bytes to send before dropping the connection
        self.ignore_range = False  # answer every request with the whole file (200)
        self.no_length = False  # send no Content-Length (the body ends when the connection closes)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                if server.ignore_range:
                    rng = None
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                if start >= len(body):
                    self.send_response(416, "Range Not Satisfiable")
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                if not server.no_length:
                    self.send_header("Content-Length", str(len(body) - start))
                else:
                    self.close_connection = True
                self.end_headers()
                cut = server.cut_after.pop(self.path, None)
                self.wfile.write(body[start:cut] if cut is not None else body[start:])
                if cut is not None:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
def coco_like() -> tuple[dict[str, bytes], tuple[Archive, ...]]:
    """Three zips in the layout of COCO's, built from the real sample files."""
    ann = make_zip({f"annotations/person_keypoints_{s}2017.json": ann_path(SAMPLE, s).read_bytes()
                    for s in ("train", "val")})
    val = make_zip({f"val2017/{p.name}": p.read_bytes() for p in sorted((SAMPLE / "val2017").iterdir())[:5]})
    train = make_zip({f"train2017/{p.name}": p.read_bytes() for p in sorted((SAMPLE / "train2017").iterdir())[:5]})
    files = {"/annotations/ann.zip": ann, "/zips/val.zip": val, "/zips/train.zip": train}
    archives = (Archive("annotations/ann.zip", len(ann), ("annotations",)),
                Archive("zips/val.zip", len(val), ("val2017",)),
                Archive("zips/train.zip", len(train), ("train2017",)))
    return files, archives


def test_full_download_extracts_the_coco_layout_and_skips_when_done(tmp_path, coco_like):
    files, archives = coco_like
    out, arch = tmp_path / "raw", tmp_path / "downloads"
    with Server(files) as srv:
        download_archives(srv.url, archives, out, arch, progress=False)
        assert len(srv.requests) == 3
        download_archives(srv.url, archives, out, arch, progress=False)
        assert len(srv.requests) == 3  # nothing fetched again
    assert ann_path(out, "val").read_bytes() == ann_path(SAMPLE, "val").read_bytes()
    assert len(list((out / "val2017").iterdir())) == 5 and len(list((out / "train2017").iterdir())) == 5
    assert not any(arch.iterdir())  # archives deleted after extraction (keep_archives false)
    assert not [p for p in out.iterdir() if p.name.startswith(".extract")]


def test_cut_download_resumes_with_a_range_request(tmp_path, coco_like):
    files, archives = coco_like
    body = files["/zips/val.zip"]
    dest = tmp_path / "val.zip"
    with Server(files) as srv:
        srv.cut_after["/zips/val.zip"] = len(body) // 3
        with pytest.raises(DownloadError, match="run again to resume"):
            fetch(srv.url + "/zips/val.zip", dest, len(body), progress=False)
        part = tmp_path / "val.zip.part"
        assert part.stat().st_size == len(body) // 3 and not dest.exists()
        fetch(srv.url + "/zips/val.zip", dest, len(body), progress=False)
        assert srv.requests == [("/zips/val.zip", None), ("/zips/val.zip", f"bytes={len(body) // 3}-")]
    assert dest.read_bytes() == body and not part.exists()


def test_server_that_ignores_range_restarts_from_zero(tmp_path, coco_like):
    files, _ = coco_like
    body = files["/zips/val.zip"]
    dest = tmp_path / "val.zip"
    (tmp_path / "val.zip.part").write_bytes(b"junk" * 100)  # not a prefix of the file
    with Server(files) as srv:
        srv.ignore_range = True
        fetch(srv.url + "/zips/val.zip", dest, len(body), progress=False)
        assert srv.requests == [("/zips/val.zip", "bytes=400-")]
    assert dest.read_bytes() == body


def test_416_on_a_whole_part_finishes_and_on_a_foreign_part_deletes_it(tmp_path, coco_like):
    files, _ = coco_like
    body = files["/zips/val.zip"]
    with Server(files) as srv:
        (tmp_path / "a.zip.part").write_bytes(body)  # complete, but never renamed
        fetch(srv.url + "/zips/val.zip", tmp_path / "a.zip", len(body), progress=False)
        assert (tmp_path / "a.zip").read_bytes() == body
        # a part as long as the server's file, but we expect a longer one: not ours
        (tmp_path / "b.zip.part").write_bytes(body)
        with pytest.raises(DownloadError, match=f"bytes \\*/{len(body)}.*deleted it"):
            fetch(srv.url + "/zips/val.zip", tmp_path / "b.zip", len(body) + 100, progress=False)
        assert not (tmp_path / "b.zip.part").exists()


def test_a_server_file_of_the_wrong_size_is_refused_before_downloading(tmp_path, coco_like):
    files, _ = coco_like
    body = files["/zips/val.zip"]
    (tmp_path / "v.zip.part").write_bytes(body[:100])
    with Server(files) as srv, pytest.raises(DownloadError, match=f"has {len(body)} bytes, expected"):
        fetch(srv.url + "/zips/val.zip", tmp_path / "v.zip", len(body) + 10, progress=False)
    assert (tmp_path / "v.zip.part").stat().st_size == 100  # nothing appended


def test_corrupt_archive_is_a_clear_error_and_nothing_is_extracted(tmp_path, coco_like):
    files, archives = coco_like
    bad = bytearray(files["/zips/val.zip"])
    bad[200:400] = bytes(200)  # damage compressed data inside the first member
    files["/zips/val.zip"] = bytes(bad)
    out, arch = tmp_path / "raw", tmp_path / "downloads"
    with Server(files) as srv:
        with pytest.raises(DownloadError) as e:
            download_archives(srv.url, archives, out, arch, progress=False)
    message = str(e.value)
    assert "val.zip" in message and "not a readable zip" in message and "\n" not in message
    assert (out / "annotations").is_dir()  # the good archive before it is kept
    assert not (out / "val2017").exists() and not (out / ".done-val.zip.json").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".extract")]
    assert not (arch / "val.zip").exists()  # deleted, so that a rerun downloads it afresh


def test_any_damage_to_an_archive_is_a_download_error(tmp_path, coco_like):
    """Random damage to a deflated member raises a CRC error or zlib.error inside zipfile,
    depending on where it lands: both must be the one clear error, with nothing extracted."""
    files, archives = coco_like
    rng = np.random.default_rng(0)
    good = files["/annotations/ann.zip"]
    kinds = set()
    for trial in range(25):
        bad = bytearray(good)
        at = int(rng.integers(100, len(good) - 200))
        bad[at:at + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
        archive = tmp_path / f"t{trial}.zip"
        archive.write_bytes(bytes(bad))
        with pytest.raises(DownloadError) as e:
            extract(archive, tmp_path / f"out{trial}", ("annotations",))
        assert str(e.value).startswith(f"{archive}: not a readable zip") and "\n" not in str(e.value)
        assert not (tmp_path / f"out{trial}" / "annotations").exists()
        kinds.add("crc" if "CRC" in str(e.value) else "zlib" if "decompress" in str(e.value) else "other")
    assert {"crc", "zlib"} <= kinds


def test_not_a_zip_at_all(tmp_path, coco_like):
    files, archives = coco_like
    files["/zips/val.zip"] = b"<html>login required</html>".ljust(len(files["/zips/val.zip"]), b" ")
    with Server(files) as srv, pytest.raises(DownloadError, match="val.zip: not a readable zip"):
        download_archives(srv.url, archives, tmp_path / "raw", tmp_path / "dl", progress=False)


def test_http_404_is_a_clear_error(tmp_path, coco_like):
    files, archives = coco_like
    del files["/zips/train.zip"]
    with Server(files) as srv:
        with pytest.raises(DownloadError, match=r"/zips/train.zip: HTTP 404"):
            download_archives(srv.url, archives, tmp_path / "raw", tmp_path / "dl", progress=False)
    assert not (tmp_path / "raw" / "train2017").exists()


def test_a_mirror_at_download_base_url_serves_the_official_paths_at_its_own_sizes(tmp_path, coco_like):
    """The coco2017 source through `download.base_url`: a mirror's repacked archives (not COCO's
    sizes) are fetched at the size it states, resumed after a cut, and extracted into COCO's layout."""
    files, _ = coco_like
    mirror = {"/annotations/annotations_trainval2017.zip": files["/annotations/ann.zip"],
              "/zips/val2017.zip": files["/zips/val.zip"], "/zips/train2017.zip": files["/zips/train.zip"]}
    out, arch = tmp_path / "raw", tmp_path / "downloads"
    with Server(mirror) as srv:
        config = DownloadConfig(base_url=srv.url + "/", archives_dir=str(arch))
        srv.cut_after["/zips/train2017.zip"] = 1000
        with pytest.raises(DownloadError, match="train2017.zip: got 1000 bytes, expected .*; run again to resume"):
            run(DataConfig(source="coco2017"), config, out, progress=False)
        run(DataConfig(source="coco2017"), config, out, progress=False)
        assert srv.requests[-1] == ("/zips/train2017.zip", "bytes=1000-")
        # a part left by a mirror's older, larger file: the 416 says so and it is deleted
        (out / ".done-train2017.zip.json").unlink()
        (arch / "train2017.zip.part").write_bytes(bytes(len(mirror["/zips/train2017.zip"]) + 10))
        with pytest.raises(DownloadError, match="not the one .*train2017.zip.part was resuming"):
            run(DataConfig(source="coco2017"), config, out, progress=False)
    assert ann_path(out, "val").read_bytes() == ann_path(SAMPLE, "val").read_bytes()
    assert len(list((out / "train2017").iterdir())) == 5
    assert json.loads((out / ".done-val2017.zip.json").read_text())["size"] == len(mirror["/zips/val2017.zip"])


def test_a_mirror_that_states_no_size_is_refused(tmp_path, coco_like):
    files, _ = coco_like
    with Server(files) as srv:
        srv.no_length = True
        with pytest.raises(DownloadError, match="val.zip: the server states no size"):
            fetch(srv.url + "/zips/val.zip", tmp_path / "val.zip", None, progress=False)
    assert not (tmp_path / "val.zip").exists()


def test_sample_source_provides_the_same_layout(tmp_path):
    out = tmp_path / "raw" / "sample"
    run(DataConfig(source="sample", sample_dir=str(SAMPLE)), DownloadConfig(), out)
    assert ann_path(out, "train").read_bytes() == ann_path(SAMPLE, "train").read_bytes()
    assert len(list((out / "val2017").iterdir())) == 79
    (out / "val2017" / "extra.jpg").write_bytes(b"x")
    provide_sample(SAMPLE, out)  # rerun replaces what was there
    assert not (out / "val2017" / "extra.jpg").exists()
    with pytest.raises(DownloadError, match="has no 'annotations' folder"):
        provide_sample(tmp_path / "empty", tmp_path / "o")


def test_own_coco_dir_is_validated_copied_and_its_images_read_in_place(tmp_path, monkeypatch):
    from squatpose.coco import images_dir
    from squatpose.download import provide_coco_dir
    from squatpose.errors import AnnotationError

    monkeypatch.chdir(REPO)  # relative paths are relative to the repository root, where stages run
    data = DataConfig(source="coco_dir")  # defaults: the sample's own files, relative
    provide_coco_dir(data, tmp_path / "raw")
    for split in ("train", "val"):
        copied = tmp_path / "raw" / "annotations" / f"person_keypoints_{split}2017.json"
        assert copied.read_bytes() == (REPO / getattr(data, f"{split}_annotations")).read_bytes()
        assert images_dir(tmp_path / "raw", split) == Path(f"data/sample/{split}2017")  # as given
    with pytest.raises(DownloadError, match=r"^nowhere: not a folder \(params.yaml: data.val_images\)$"):
        provide_coco_dir(dataclasses.replace(data, val_images="nowhere"), tmp_path / "raw")
    with pytest.raises(AnnotationError, match=r"cannot read the annotation file .*data.train_annotations\)$"):
        provide_coco_dir(dataclasses.replace(data, train_annotations="data/sample"), tmp_path / "raw")
    assert images_dir(tmp_path / "raw", "val") == Path("data/sample/val2017")  # the good copy is kept
