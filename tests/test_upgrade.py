"""Upgrades never lose data: this version starts on a data folder made by the release recorded in
tests/fixtures (scripts/make_upgrade_fixture.py, from real ClearML SDK runs) and answers the same for
its task, scalars, console lines, model and files; data marked by a newer release is refused at start
with a message and exit code 3, and nothing is written to it."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from datetime import datetime
from uuid import uuid4

import pytest
from pymongo import MongoClient

from apiserver.bll.migrations import EXIT_BOOT_ERROR, SCHEMA_VERSION
from scripts.make_upgrade_fixture import ANSWERS, ARCHIVE, answers
from tests.helpers import ROOT, ServerProcess, free_port


def test_this_version_answers_the_same_on_the_recorded_data_folder(tmp_path):
    recorded = json.loads(ANSWERS.read_text())
    assert recorded["schema_version"] <= SCHEMA_VERSION
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(tmp_path, filter="data")
    server = ServerProcess(None, recorded["database_name"], workers=1, data_dir=tmp_path / "data")
    server.start(tmp_path, timeout=120)
    try:
        expected = recorded["answers"]
        now = answers(server, expected["task"]["id"], expected["model"]["id"])
        for part in ("task", "model", "scalars", "log", "files"):
            assert now[part] == expected[part], f"{part} differs from what {recorded['server_version']} answered"
    finally:
        server.stop()
    log = server.log()  # every migration above the recorded version ran
    assert all(f"migration {v} done" in log for v in range(recorded["schema_version"] + 1, SCHEMA_VERSION + 1))


def test_data_from_a_newer_release_is_refused_untouched(mongo_uri):
    db_name = f"newer_{uuid4().hex[:8]}"
    db = MongoClient(mongo_uri)[db_name]
    db.server_meta.insert_one({"_id": "schema", "version": SCHEMA_VERSION + 1, "server_version": "99.0.0"})
    server = ServerProcess(mongo_uri, db_name, workers=1)
    proc = subprocess.run([sys.executable, "-m", "apiserver", "--port", str(free_port()), "--workers", "1"],
                          cwd=ROOT, env=server.env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_BOOT_ERROR, proc.stderr[-3000:]
    assert f"schema version {SCHEMA_VERSION + 1}, server 99.0.0" in proc.stderr
    assert "Nothing was changed" in proc.stderr
    assert db.list_collection_names() == ["server_meta"]  # no index, no admin, no default queue written
    db.client.drop_database(db_name)


@pytest.fixture()
def one_more_migration(app, monkeypatch):
    """Migrations as if this code read one schema version more, the next migration being ``run``; the
    stored version and the migrations lease are put back afterwards."""
    from apiserver.bll import migrations
    from apiserver.database.model.lease import Lease
    from apiserver.database.model.meta import ServerMeta
    from apiserver.database.store import store_of

    meta, leases = store_of(ServerMeta), store_of(Lease)
    saved = meta.find_one({"_id": migrations.SCHEMA_DOC})
    version = migrations.stored_version()

    def install(run) -> int:
        monkeypatch.setattr(migrations, "SCHEMA_VERSION", version + 1)
        monkeypatch.setattr(migrations, "MIGRATIONS", (migrations.Migration(version + 1, "a test's", run),))
        return version

    yield install
    if saved is None:
        meta.delete_one({"_id": migrations.SCHEMA_DOC})
    else:
        meta.replace_one({"_id": migrations.SCHEMA_DOC}, saved)
    leases.delete_one({"_id": migrations.LEASE})


def test_a_migration_whose_lease_was_taken_records_no_version(one_more_migration):
    from apiserver.bll import migrations
    from apiserver.database.model.lease import Lease
    from apiserver.database.store import store_of
    from apiserver.state import get_state

    def taken_over(state) -> int:  # another process took the lease (as if this one stalled past its ttl)
        store_of(Lease).update_one({"_id": migrations.LEASE},
                                   {"$set": {"holder": "another-process", "expires_at": datetime(2999, 1, 1)}})
        return 0

    version = one_more_migration(taken_over)
    with pytest.raises(migrations.MigrationsLeaseLost, match="another process took the migrations lease"):
        migrations.migrate(get_state(), "test", lease_ttl_sec=30)
    assert migrations.stored_version() == version
    assert store_of(Lease).find_one({"_id": migrations.LEASE})["holder"] == "another-process"  # not released


def test_a_failed_migration_releases_its_lease(one_more_migration):
    from apiserver.bll import migrations
    from apiserver.database.model.lease import Lease
    from apiserver.database.store import store_of
    from apiserver.state import get_state

    def fails(state) -> int:
        raise RuntimeError("a broken migration")

    version = one_more_migration(fails)
    with pytest.raises(RuntimeError, match="a broken migration"):
        migrations.migrate(get_state(), "test", lease_ttl_sec=30)
    assert migrations.stored_version() == version
    assert store_of(Lease).find_one({"_id": migrations.LEASE}) is None  # the others need not wait 30 s
