"""``python -m apiserver backup`` of a running server while a writer adds tasks and files, and
``restore`` of its archive into a new data folder that a server then serves; refused and damaged
restores leave nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import threading
import time
from datetime import datetime
from pathlib import Path
from uuid import uuid4

import pytest
import requests

from apiserver.database.embedded import EmbeddedDatabase
from tests.helpers import ADMIN_KEY, ADMIN_SECRET, ROOT, ServerProcess, basic, with_bounded_waits


def cli(env: dict, data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "apiserver", "--data-dir", str(data_dir), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def upload(server: ServerProcess, auth: str, path: str, data: bytes) -> None:
    resp = requests.post(server.base_url + "/files/", files={path: (Path(path).name, data)},
                         headers={"Authorization": auth}, timeout=60)
    assert resp.status_code == 200, resp.text


class Writer(threading.Thread):
    """Uploads a file, then creates a task naming it, over and over; keeps when each was acknowledged."""

    def __init__(self, server: ServerProcess, auth: str, name: str):
        super().__init__(daemon=True)
        self.server, self.auth, self.name = server, auth, name
        self.client = server.client(auth)
        self.acked: list[tuple[str, str, bytes, float]] = []  # task id, file path, bytes, ack time
        self.uploaded: list[float] = []  # ack times of the uploads
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            n = 0
            while not self.stop.is_set():
                n += 1
                path, data = f"writer/{self.name}/{n}/weights.bin", f"{self.name} {n} ".encode() * (1000 + n)
                upload(self.server, self.auth, path, data)
                self.uploaded.append(time.time())
                task = self.client.call("tasks.create", name=f"written {self.name} {n}", type="training",
                                        comment=path)["id"]
                self.acked.append((task, path, data, time.time()))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def answers(admin, task: str, tasks: list[str]) -> dict:
    """What a client reads of the seeded work: compared between the original and the restore."""
    return {"tasks": admin.call("tasks.get_all", id=tasks, order_by=["name"]),
            "scalars": admin.call("events.scalar_metrics_iter_histogram", task=task, samples=100),
            "log": admin.call("events.get_task_log", task=task, batch_size=50)}


def manifest_of(archive: Path) -> dict:
    with tarfile.open(archive) as tar:
        return json.loads(tar.extractfile("manifest.json").read())


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory):
    """A server with seeded tasks and files, backed up while a writer adds more; then stopped."""
    tmp = tmp_path_factory.mktemp("backup")
    server = ServerProcess(None, "backup", workers=2, data_dir=tmp / "source").start(tmp)
    auth = basic(ADMIN_KEY, ADMIN_SECRET)
    try:
        admin = server.client(auth)
        project = admin.call("projects.create", name="kept", description="before the backup")["id"]
        seeded = [admin.call("tasks.create", name=f"seeded {i}", type="training", project=project)["id"]
                  for i in range(30)]
        now = int(time.time() * 1000)
        events = [{"task": seeded[0], "type": "training_stats_scalar", "metric": "loss", "variant": v, "iter": i,
                   "value": (i * 7919 % 1009) / 10, "timestamp": now + i} for i in range(300) for v in ("a", "b")]
        events += [{"task": seeded[0], "type": "log", "level": "info", "worker": "w", "msg": f"line {i}",
                    "timestamp": now + i} for i in range(120)]
        status, reply, _ = admin.request("POST", "/events.add_batch", raw="\n".join(json.dumps(e) for e in events),
                                         headers={"Content-Type": "application/json-lines"})
        assert status == 200 and reply["data"]["added"] == len(events), reply
        before_backup = answers(admin, seeded[0], seeded)
        # bulk for the backup to copy (0.2 s on an idle machine), so that it lasts while the writers go on
        big = {f"bulk/{i}.bin": bytes([i]) * (4 << 20) for i in range(12)}
        for path, data in big.items():
            upload(server, auth, path, data)
        writers = [Writer(server, auth, name) for name in ("w1", "w2", "w3")]
        for writer in writers:
            writer.start()
        while min(len(w.acked) for w in writers) < 3 and not any(w.error for w in writers):
            time.sleep(0.05)
        archive = tmp / "archive.tar"
        done = cli(server.env, tmp / "source", "backup", "--to", str(archive))
        time.sleep(0.5)
        for writer in writers:
            writer.stop.set()
            writer.join(60)
            assert writer.error is None, writer.error
        assert done.returncode == 0, done.stderr
        assert "backup written to" in done.stdout
        expected = {"project": project, "seeded": seeded, "big": big, "server": server.env,
                    "answers": before_backup}
    finally:
        server.stop()
    return tmp, archive, writers, expected


def test_a_backup_taken_under_writes_restores_every_acknowledged_task_and_file(backed_up):
    tmp, archive, writers, expected = backed_up
    manifest = manifest_of(archive)
    assert manifest["format"] == "apiserver-backup" and manifest["snapshot"] is True
    began, finished = epoch(manifest["snapshot_at"]), epoch(manifest["finished"])
    acked = [w for writer in writers for w in writer.acked]
    before = [w for w in acked if w[3] < began]
    during = [t for writer in writers for t in writer.uploaded + [w[3] for w in writer.acked] if began < t < finished]
    assert len(before) >= 9, "the writers had acknowledged too little before the backup began"
    assert during, f"no write was acknowledged in the {finished - began:.2f}s the backup ran: were writes blocked?"

    restored_dir = tmp / "restored"
    done = cli(expected["server"], restored_dir, "restore", "--from", str(archive))
    assert done.returncode == 0, done.stderr
    assert f"{manifest['documents']:,} documents" in done.stdout
    assert not [p for p in tmp.iterdir() if ".restoring-" in p.name]

    server = ServerProcess(None, "backup", workers=1, data_dir=restored_dir).start(tmp)
    try:
        admin = server.client(basic(ADMIN_KEY, ADMIN_SECRET))
        assert admin.call("projects.get_by_id", project=expected["project"])["project"]["description"] == \
            "before the backup"
        assert answers(admin, expected["seeded"][0], expected["seeded"]) == expected["answers"]
        written: dict[str, dict] = {}
        for page in range(100):
            got = admin.call("tasks.get_all", name="^written ", only_fields=["id", "comment"], order_by=["id"],
                             page=page, page_size=500)["tasks"]
            written.update((t["id"], t) for t in got)
            if len(got) < 500:
                break
        # every task acknowledged before the backup began is there ...
        assert {w[0] for w in before} <= set(written)
        assert set(written) <= {w[0] for w in acked}
        # ... and the archive is one snapshot: each writer's tasks in it are a prefix of its sequence
        for writer in writers:
            order = [w[0] for w in writer.acked]
            kept = [t for t in order if t in written]
            assert kept == order[:len(kept)], writer.name
        files = {w[0]: w for w in acked}
        with requests.Session() as http:
            http.headers["Authorization"] = admin.auth
            for task_id, task in written.items():  # every file a restored record names is there
                _, path, data, _ = files[task_id]
                assert task["comment"] == path
                got = http.get(f"{server.base_url}/files/{path}", timeout=60)
                assert got.status_code == 200 and got.content == data, path
            for path, data in expected["big"].items():
                got = http.get(f"{server.base_url}/files/{path}", timeout=60)
                assert got.status_code == 200 and got.content == data, path
    finally:
        assert server.stop() == 0


def test_restore_refuses_a_folder_that_holds_anything(backed_up):
    tmp, archive, _, expected = backed_up
    target = tmp / "occupied"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    done = cli(expected["server"], target, "restore", "--from", str(archive))
    assert done.returncode == 1
    assert "is not empty" in done.stderr and str(target) in done.stderr
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    # and a backup of a folder that holds no server's data (a mistyped --data-dir) starts nothing
    done = cli(expected["server"], tmp / "mistyped", "backup", "--to", str(tmp / "never.tar"))
    assert done.returncode == 1 and "there is no server data in" in done.stderr
    assert not (tmp / "mistyped").exists() and not (tmp / "never.tar").exists()


def test_a_damaged_or_foreign_archive_fails_with_a_message_and_leaves_nothing(backed_up):
    tmp, archive, _, expected = backed_up
    env = expected["server"]
    # a backup of a stopped server's folder starts its database itself; gzip by the name
    gz = tmp / "stopped.tar.gz"
    done = cli(env, tmp / "source", "backup", "--to", str(gz))
    assert done.returncode == 0, done.stderr
    assert manifest_of(gz)["documents"] > manifest_of(archive)["documents"]  # the writer went on after it

    foreign = tmp / "foreign.tar"
    foreign.write_bytes(b"this is not an archive" * 100)
    assert gz.read_bytes()[:2] == b"\x1f\x8b"  # gzip by the name
    flipped = tmp / "flipped.tar"
    data = bytearray(archive.read_bytes())
    where = data.index(b"w2 3 w2 3 ")  # inside a file member: only the manifest's sums can tell
    data[where:where + 4] = b"W2 3"
    flipped.write_bytes(bytes(data))
    truncated = tmp / "truncated.tar"
    truncated.write_bytes(archive.read_bytes()[: len(data) * 2 // 3])

    cases = {foreign: "is not a backup archive", flipped: "the archive is damaged", truncated: "truncated"}
    running = {bad: subprocess.Popen([sys.executable, "-m", "apiserver", "--data-dir", str(tmp / f"from-{bad.name}"),
                                      "restore", "--from", str(bad)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True) for bad in cases}
    for bad, proc in running.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, (bad, out)
        assert cases[bad] in err and "Traceback" not in err, (bad, err)
        assert not (tmp / f"from-{bad.name}").exists()
    assert not [p for p in tmp.iterdir() if ".restoring-" in p.name]


@pytest.fixture
def own_database(tmp_path):
    """A database process of the test's own: a restore and backup there cannot wedge the session's."""
    db = EmbeddedDatabase(tmp_path / "database", start_timeout=60)
    yield with_bounded_waits(db.ensure_running())
    db.stop()


def test_restore_into_an_empty_mongodb_database_with_gridfs_files_and_back(backed_up, own_database, tmp_path):
    """With database.uri set, restore fills that database (empty only) and the file store the config names
    (GridFS here, from a local-folder archive); a backup of it has the same documents and file bytes."""
    import pymongo

    mongo_uri = own_database
    tmp, archive, _, expected = backed_up
    name = f"restored_{uuid4().hex[:8]}"
    env = {**expected["server"], "APISERVER__database__uri": mongo_uri, "APISERVER__database__name": name,
           "APISERVER__files__backend": "gridfs"}
    try:
        done = cli(env, tmp_path / "unused", "restore", "--from", str(archive))
        assert done.returncode == 0, done.stderr
        again = cli(env, tmp_path / "unused", "restore", "--from", str(archive))
        assert again.returncode == 1 and f"the database '{name}' at database.uri is not empty" in again.stderr
        second = tmp_path / "from-gridfs.tar"
        done = cli(env, tmp_path / "unused", "backup", "--to", str(second))
        assert done.returncode == 0, done.stderr
        first, copy = manifest_of(archive), manifest_of(second)
        assert copy["files_backend"] == "gridfs" and copy["collections"] == first["collections"]
        files = {k: v for k, v in first["sha256"].items() if k.startswith("files/")}
        assert len(files) == first["files"]["count"] > 12
        assert {k: v for k, v in copy["sha256"].items() if k.startswith("files/")} == files
        assert not (tmp_path / "unused").exists()
    finally:
        with pymongo.MongoClient(mongo_uri) as client:
            client.drop_database(name)
