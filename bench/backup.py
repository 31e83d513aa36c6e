"""Backup and restore speed: ``python -m apiserver backup`` of a running server on its embedded
database (tasks, scalar events, files) against the least a dump needs (pymongo reading every
collection's raw BSON and reading every file of the store, in the same run), and ``restore`` into
a new data folder against pymongo inserting the same documents into an empty database and copying
the files folder. Prints MB/s and documents/s of each, and their ratios.

    python -m bench.backup [--tasks 20000] [--events 200000] [--files 100] [--file-mb 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pymongo
import requests
from bson import ObjectId

from bench.common import ROOT, free_port
from bench.events import JSON_LINES, scalar_batch

KEY, SECRET = "BENCHADMINKEY00000000000", "bench-admin-secret-000000000000000"


def apiserver(env: dict, data_dir: Path, *args: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "apiserver", "--data-dir", str(data_dir), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{args[0]} failed: {done.stderr}")
    return elapsed, done.stdout.strip()


def seed(base: str, http: requests.Session, db, tasks: int, events: int, files: int, file_mb: float) -> None:
    template = http.post(f"{base}/tasks.create", json={"name": "template", "type": "training"}).json()["data"]["id"]
    doc = db.tasks.find_one({"_id": template})
    for start in range(0, tasks, 5000):
        db.tasks.insert_many([{**doc, "_id": ObjectId().binary.hex() + "00000000", "name": f"seeded {i}"}
                              for i in range(start, min(tasks, start + 5000))])
    per_task = 2000
    for t in range(max(1, events // per_task)):
        task = http.post(f"{base}/tasks.create", json={"name": f"events {t}", "type": "training"}).json()["data"]["id"]
        for n in range(0, per_task, 500):
            lines = "\n".join(json.dumps(e) for e in scalar_batch(task, n // 20, 500))
            resp = http.post(f"{base}/events.add_batch", data=lines, headers=JSON_LINES)
            assert resp.status_code == 200, resp.text
    for f in range(files):
        data = os.urandom(int(file_mb * (1 << 20)))
        resp = http.post(f"{base}/files/", files={f"bench/{f}/weights.bin": ("weights.bin", data)})
        assert resp.status_code == 200, resp.text


def raw_dump(db, files_root: Path) -> tuple[float, int, int]:
    """pymongo reading every collection's raw BSON, then every file: seconds, documents, bytes."""
    start = time.perf_counter()
    docs = size = 0
    for name in db.list_collection_names():
        for raw in db[name].find_raw_batches({}, batch_size=1000):
            size += len(raw)
            docs += len(raw) and sum(1 for _ in _lengths(raw))
    for path in files_root.rglob("*"):
        if path.is_file() and ".incoming" not in path.parts:
            with open(path, "rb") as fh:
                while block := fh.read(1 << 20):
                    size += len(block)
    return time.perf_counter() - start, docs, size


def _lengths(raw: bytes):
    pos = 0
    while pos < len(raw):
        size = int.from_bytes(raw[pos:pos + 4], "little")
        yield size
        pos += size


def raw_restore(db, target_db, files_root: Path, target_files: Path) -> float:
    """pymongo inserting every collection's documents into an empty database, then copying the files."""
    from bson.raw_bson import RawBSONDocument

    batches = [(name, raw) for name in db.list_collection_names()
               for raw in db[name].find_raw_batches({}, batch_size=1000)]
    start = time.perf_counter()
    for name, raw in batches:
        docs, pos = [], 0
        for size in _lengths(raw):
            docs.append(RawBSONDocument(raw[pos:pos + size]))
            pos += size
        target_db[name].insert_many(docs, ordered=False)
    shutil.copytree(files_root, target_files)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--file-mb", type=float, default=1.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    env = {**os.environ, "APISERVER_ADMIN_ACCESS_KEY": KEY, "APISERVER_ADMIN_SECRET_KEY": SECRET,
           "APISERVER__auth__bcrypt_rounds": "4", "APISERVER__apiserver__log_level": "WARNING"}
    env.pop("APISERVER__database__uri", None)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "apiserver", "--data-dir", str(work / "data"), "--port",
                               str(port), "--workers", "2"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(base + "/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        http = requests.Session()
        http.auth = (KEY, SECRET)
        sys.path.insert(0, str(ROOT))
        os.environ["APISERVER__database__embedded__data_dir"] = str(work / "data")  # noqa: SIM112 - our casing
        from apiserver.config import load_config
        from apiserver.database.connection import join_or_start

        uri, _ = join_or_start(load_config())
        client = pymongo.MongoClient(uri)
        db = client.apiserver
        t0 = time.perf_counter()
        seed(base, http, db, args.tasks, args.events, args.files, args.file_mb)
        print(f"seeded {args.tasks:,} tasks, {args.events:,} scalar events, {args.files} files of {args.file_mb} MB "
              f"in {time.perf_counter() - t0:.0f}s")
        archive = work / "backup.tar"
        backup_s, out = apiserver(env, work / "data", "backup", "--to", str(archive))
        manifest = json.loads(subprocess.run(["tar", "-xOf", str(archive), "manifest.json"], capture_output=True,
                                             check=True).stdout)
        docs, mb = manifest["documents"], archive.stat().st_size / 1e6
        raw_s, raw_docs, raw_bytes = raw_dump(db, work / "data" / "files")
        print(f"backup (server running): {backup_s:.2f}s for {docs:,} documents and {manifest['files']['count']} "
              f"files, archive {mb:,.1f} MB: {mb / backup_s:,.1f} MB/s, {docs / backup_s:,.0f} documents/s "
              f"(whole command, Python start included)\n  its own report: {out}")
        print(f"  raw pymongo reads + file reads: {raw_s:.2f}s for {raw_docs:,} documents, {raw_bytes / 1e6:,.1f} MB: "
              f"{raw_bytes / 1e6 / raw_s:,.1f} MB/s; ratio backup/raw = {backup_s / raw_s:.2f}")
        restore_s, out = apiserver(env, work / "restored", "restore", "--from", str(archive))
        print(f"restore (new data folder, its database started and stopped): {restore_s:.2f}s: "
              f"{mb / restore_s:,.1f} MB/s, {docs / restore_s:,.0f} documents/s\n  its own report: {out}")
        raw_r = raw_restore(db, client.bench_restore_baseline, work / "data" / "files", work / "copied-files")
        client.drop_database("bench_restore_baseline")
        print(f"  raw pymongo insert_many + copy of the files folder: {raw_r:.2f}s: {mb / raw_r:,.1f} MB/s; "
              f"ratio restore/raw = {restore_s / raw_r:.2f}")
    finally:
        server.terminate()
        server.wait(60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
