"""The data stages at COCO's size on this machine: time, memory and disk of download -> subsets -> shards.

    python benchmarks/coco_scale.py [--sizes 10000,40000,121020] [--work ~/.cache/squatpose/coco-scale]

For each size (train persons with a lower-body joint; val persons in COCO's proportion) it builds a
COCO-2017-shaped mirror from the embedded sample (benchmarks/coco_mirror.py), serves it on
127.0.0.1, and runs the stages' own commands from dvc.yaml in a scratch project whose params.yaml
is the repository's with `data.source: coco2017` and `download.base_url` set to the mirror. Each
stage is timed and its memory read from /proc every 50 ms: the peak resident memory of the stage
process, of its largest worker, and of all of them together (a sum that counts shared pages
twice, so an upper bound). At the largest size it then checks that an interrupted run resumes:
`shards@train` killed (SIGKILL to the stage and its workers) once half its shards are written
keeps them and rebuilds to the same content hashes as the uninterrupted run; `download` killed
while train2017.zip is half fetched resumes with an HTTP Range request and extracts the same files.

Prints a markdown table and writes the figures as JSON (--out). Everything lives under --work,
outside the checkout, and is deleted as each size finishes (--keep keeps it). Disk: at 121,020
persons 29 GiB at the peak (mirror, extracted images, 192x256 shards, the download check's copy).
"""

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from coco_mirror import Mirror, build_mirror

REPO = Path(__file__).resolve().parents[1]
SOURCE = "coco2017"
POLL_S = 0.05
MIB = 1 << 20


@dataclass
class Measure:
    """One stage run: wall time and peak resident memory (MiB)."""

    wall_s: float
    stage_mb: float
    worker_mb: float
    all_mb: float
    rc: int


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _memory_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in kB; zeros once it is gone."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    except (OSError, ValueError):
        return 0, 0
    return int(fields.get("VmRSS", "0 kB").split()[0]), int(fields.get("VmHWM", "0 kB").split()[0])


def run_stage(cmd: list[str], cwd: Path, log: Path, kill_when=None) -> Measure:
    """Run `cmd` in `cwd` in its own process group, sampling the memory of it and its descendants.

    `kill_when()` (optional) is asked at every sample; when it says yes, the whole group is
    SIGKILLed, as a crash or the OOM killer would."""
    t0 = time.perf_counter()
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    stage_kb = worker_kb = all_kb = 0
    while proc.poll() is None:
        tree, pids, k = _children(), [proc.pid], 0
        while k < len(pids):
            pids.extend(tree.get(pids[k], []))
            k += 1
        mem = {pid: _memory_kb(pid) for pid in pids}
        stage_kb = max(stage_kb, mem[proc.pid][1])
        worker_kb = max([worker_kb] + [hwm for pid, (_, hwm) in mem.items() if pid != proc.pid])
        all_kb = max(all_kb, sum(rss for rss, _ in mem.values()))
        if kill_when is not None and kill_when():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            break
        time.sleep(POLL_S)
    return Measure(time.perf_counter() - t0, stage_kb / 1024, worker_kb / 1024, all_kb / 1024, proc.returncode)


def stage_commands() -> dict[str, list[str]]:
    """The download, subsets and shards commands of dvc.yaml for the coco2017 source."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    cmds = {"download": stages["download"]["cmd"], "subsets": stages["subsets"]["cmd"]}
    for item in stages["shards"]["foreach"]:
        cmds[f"shards@{item}"] = stages["shards"]["do"]["cmd"].replace("${item}", item)
    out = {}
    for name, cmd in cmds.items():
        words = cmd.replace("${data.source}", SOURCE).split()
        assert words[0] == "python" and words[1].startswith("stages/"), cmd
        out[name] = [sys.executable, str(REPO / words[1])] + words[2:]
    return out


def make_project(root: Path, base_url: str, overrides: dict) -> Path:
    """A scratch project: the repository's params.yaml with the coco2017 source at the mirror."""
    root.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["source"] = SOURCE
    params["download"]["base_url"] = base_url
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        params[section][key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def disk_mb(path: Path) -> float:
    """Bytes of the files under `path`, in MiB."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / MIB if Path(path).exists() else 0.0


def shard_hashes(shards_dir: Path) -> dict[str, str]:
    """Per shard, a SHA-256 of every array file's bytes, read back from disk."""
    out = {}
    for shard in sorted(p for p in shards_dir.iterdir() if p.name.startswith("shard-")):
        h = hashlib.sha256()
        for f in sorted(shard.glob("*.npy")):
            h.update(f.name.encode())
            h.update(f.read_bytes())
        out[shard.name] = h.hexdigest()
    return out


def finished_shards(shards_dir: Path) -> dict[str, int]:
    """Finished shard folders (renamed into place) -> their meta.json's inode."""
    if not shards_dir.is_dir():
        return {}
    return {p.name: (p / "meta.json").stat().st_ino for p in shards_dir.iterdir()
            if p.name.startswith("shard-") and (p / "meta.json").is_file()}


def kill_and_resume_shards(project: Path, cmd: list[str], log: Path) -> dict:
    """Build the train shards uninterrupted, then again with a SIGKILL at half and a rerun: compare."""
    out = project / "data" / "shards" / SOURCE / "train"
    reference = shard_hashes(out)
    total = len(reference)
    shutil.rmtree(out)
    killed = run_stage(cmd, project, log, kill_when=lambda: len(finished_shards(out)) >= total // 2)
    kept = finished_shards(out)
    if killed.rc == 0:
        raise SystemExit(f"error: shards@train finished before it could be killed ({total} shards); use a larger size")
    resumed = run_stage(cmd, project, log)
    after = finished_shards(out)
    return {"shards": total, "done_at_kill": len(kept), "killed_after_s": round(killed.wall_s, 1),
            "resume_s": round(resumed.wall_s, 1), "resume_rc": resumed.rc,
            "kept": sum(after.get(name) == ino for name, ino in kept.items()),
            "identical": shard_hashes(out) == reference,
            "temporaries_left": sum(p.name.startswith(".") for p in out.iterdir())}


def kill_and_resume_download(project: Path, mirror: Mirror, cmd: list[str], log: Path) -> dict:
    """Download into a second folder, SIGKILL it while train2017.zip is half fetched, rerun: compare."""
    reference = project / "data" / "raw" / SOURCE
    resumed_dir = project / "data" / "raw" / "resumed"
    args = [a if a != f"data/raw/{SOURCE}" else "data/raw/resumed" for a in cmd]
    size = (mirror.root / "zips" / "train2017.zip").stat().st_size
    part = project / "data" / "downloads" / "train2017.zip.part"
    mirror.rate = size / 8  # about 8 s for the whole file, so that the kill lands midway
    killed = run_stage(args, project, log, kill_when=lambda: part.is_file() and part.stat().st_size >= size // 2)
    mirror.rate = 0
    at_kill = part.stat().st_size if part.is_file() else 0
    sent_before = mirror.sent
    resumed = run_stage(args, project, log)
    listing = lambda root: sorted((str(p.relative_to(root)), p.stat().st_size)  # noqa: E731
                                  for p in root.rglob("*") if p.is_file() and not p.name.startswith(".done"))
    result = {"archive_bytes": size, "part_at_kill": at_kill, "killed_rc": killed.rc, "resume_rc": resumed.rc,
              "range_asked": mirror.ranges[-1] == ("/zips/train2017.zip", f"bytes={at_kill}-"),
              "bytes_after_resume": mirror.sent - sent_before,
              "identical": listing(resumed_dir) == listing(reference),
              "disk_mb_with_both_copies": round(disk_mb(project.parent), 1)}
    shutil.rmtree(resumed_dir)
    return result


def rehearse(size: int, work: Path, overrides: dict, resume_checks: bool, keep: bool) -> dict:
    """Mirror, stages and (optionally) the kill checks at one size; returns the figures."""
    root = work / f"persons-{size}"
    if root.exists():
        shutil.rmtree(root)
    t0 = time.perf_counter()
    content = build_mirror(root / "mirror", size)
    result = {"size": size, "mirror": content, "mirror_build_s": round(time.perf_counter() - t0, 1), "stages": {}}
    persons = {"download": content["train"]["persons"] + content["val"]["persons"],
               "subsets": content["train"]["persons"] + content["val"]["persons"],
               "shards@train": content["train"]["persons"], "shards@val": content["val"]["persons"]}
    with Mirror(root / "mirror") as mirror:
        project = make_project(root / "project", mirror.url, overrides)
        log = root / "stages.log"
        cmds = stage_commands()
        outputs = {"download": f"data/raw/{SOURCE}", "subsets": f"data/subsets/{SOURCE}",
                   "shards@train": f"data/shards/{SOURCE}/train", "shards@val": f"data/shards/{SOURCE}/val"}
        for name, cmd in cmds.items():
            print(f"[{size}] {name} ...", file=sys.stderr, flush=True)
            m = run_stage(cmd, project, log)
            if m.rc != 0:
                raise SystemExit(f"error: {name} failed (exit {m.rc}); see {log}")
            result["stages"][name] = {**asdict(m), "persons": persons[name],
                                      "disk_mb": round(disk_mb(project / outputs[name]), 1)}
        result["peak_disk_mb"] = round(disk_mb(root), 1)
        if resume_checks:
            print(f"[{size}] kill and resume ...", file=sys.stderr, flush=True)
            result["shards_resume"] = kill_and_resume_shards(project, cmds["shards@train"], log)
            result["download_resume"] = kill_and_resume_download(project, mirror, cmds["download"], log)
            result["peak_disk_mb"] = max(result["peak_disk_mb"], result["download_resume"]["disk_mb_with_both_copies"])
    if not keep:
        shutil.rmtree(root)
    return result


def table(results: list[dict]) -> str:
    """The markdown table of every stage at every size."""
    lines = ["| persons (train) | stage | wall s | persons/s | peak RSS stage MiB | peak RSS worker MiB "
             "| peak RSS all MiB | output MiB |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        for name, s in r["stages"].items():
            lines.append(f"| {r['mirror']['train']['persons']:,} | {name} | {s['wall_s']:.1f} | "
                         f"{s['persons'] / s['wall_s']:,.0f} | {s['stage_mb']:,.0f} | "
                         f"{s['worker_mb']:,.0f} | {s['all_mb']:,.0f} | {s['disk_mb']:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,40000,121020", help="train persons, comma-separated")
    parser.add_argument("--work", default=str(Path.home() / ".cache" / "squatpose" / "coco-scale"))
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a params.yaml override for the scratch project (e.g. shards.shard_size=64)")
    parser.add_argument("--out", help="write the figures as JSON here too")
    parser.add_argument("--keep", action="store_true", help="keep each size's mirror and project")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    work = Path(args.work).expanduser()
    if REPO in work.resolve().parents or work.resolve() == REPO:
        raise SystemExit(f"error: --work {work} is inside the checkout; pick a folder outside it")
    results = [rehearse(size, work, overrides, size == max(sizes), args.keep) for size in sizes]
    print(table(results))
    big = max(results, key=lambda r: r["size"])
    for check in ("shards_resume", "download_resume"):
        print(f"{check}: {json.dumps(big[check])}")
    scale = [r["stages"] for r in results]
    for name in scale[0]:
        rates = [s[name]["persons"] / s[name]["wall_s"] for s in scale]
        print(f"{name}: persons/s from smallest to largest size {' -> '.join(f'{x:,.0f}' for x in rates)} "
              f"(ratio {rates[-1] / rates[0]:.2f}); peak RSS all {max(s[name]['all_mb'] for s in scale):,.0f} MiB")
    print(f"peak disk: {max(r['peak_disk_mb'] for r in results) / 1024:.1f} GiB")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
