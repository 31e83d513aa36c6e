"""The file server at /files/ through the Flask test client: the upload protocol, ranged reads,
confinement of paths, the size limit, credentials, company scoping, safe serving, batch deletes
and the files of deleted tasks, models and projects."""

from __future__ import annotations

import dataclasses
import io
import os
from uuid import uuid4

import pytest

from apiserver.database.model.base import utcnow
from apiserver.database.model.files import FileDeletion
from apiserver.state import get_state
from tests.helpers import ADMIN_KEY, ADMIN_SECRET, basic


def upload(web, auth, parts: dict[str, bytes], path: str = "/files/"):
    data = {name: (io.BytesIO(body), name.rsplit("/", 1)[-1]) for name, body in parts.items()}
    headers = {"Authorization": auth} if auth else {}
    return web.post(path, data=data, headers=headers, content_type="multipart/form-data")


def unique(name: str = "f.bin") -> str:
    return f"t-{uuid4().hex[:8]}/{name}"


def company_file(files, company: str, path: str):
    """The file as it lies in the local store (None when there is none)."""
    from apiserver.bll.files.paths import key_of

    path_on_disk = files.store.root / key_of(company, path)
    return path_on_disk.read_bytes() if path_on_disk.is_file() else None


def test_upload_read_range_head_delete(web, api, files):
    a, b = unique("a.json"), unique("b.bin")
    resp = upload(web, api.auth, {"/" + a: b'{"x": 1}', b: bytes(range(256)) * 4})
    assert resp.status_code == 200
    assert resp.get_json() == [a, b]  # one leading '/' is the company's root, as the SDK sends it
    got = web.get(f"/files/{a}", headers={"Authorization": api.auth})
    assert got.status_code == 200 and got.data == b'{"x": 1}'
    assert got.mimetype == "application/json" and got.headers["X-Content-Type-Options"] == "nosniff"
    ranged = web.get(f"/files/{b}", headers={"Authorization": api.auth, "Range": "bytes=2-5"})
    assert ranged.status_code == 206 and ranged.data == bytes([2, 3, 4, 5])
    assert ranged.headers["Content-Range"] == "bytes 2-5/1024"
    tail = web.get(f"/files/{b}", headers={"Authorization": api.auth, "Range": "bytes=-3"})
    assert tail.status_code == 206 and tail.data == bytes([253, 254, 255])
    bad = web.get(f"/files/{b}", headers={"Authorization": api.auth, "Range": "bytes=5000-"})
    assert bad.status_code == 416 and bad.headers["Content-Range"] == "bytes */1024"
    head = web.head(f"/files/{b}", headers={"Authorization": api.auth})
    assert head.status_code == 200 and head.headers["Content-Length"] == "1024" and head.data == b""
    assert head.headers["Accept-Ranges"] == "bytes"
    deleted = web.delete(f"/files/{b}", headers={"Authorization": api.auth})
    assert deleted.status_code == 200 and deleted.get_json() == b
    assert web.get(f"/files/{b}", headers={"Authorization": api.auth}).status_code == 404
    assert web.delete(f"/files/{b}", headers={"Authorization": api.auth}).status_code == 404
    # the SDK posts to the files_server URL itself, without a trailing slash
    assert upload(web, api.auth, {b: b"again"}, path="/files").status_code == 200
    assert web.get("/files/", headers={"Authorization": api.auth}).data == b"OK"


def test_replacing_a_file_is_atomic_and_uploads_leave_no_temporary_files(web, api, files):
    path = unique()
    for body in (b"first", b"second version"):
        assert upload(web, api.auth, {path: body}).status_code == 200
    assert web.get(f"/files/{path}", headers={"Authorization": api.auth}).data == b"second version"
    assert not any((files.store.root / ".incoming").iterdir())


@pytest.mark.parametrize("bad", ["a/../../escape.txt", "../x", "//etc/passwd", "C:/Windows/x", "dir/", "a/\x01b"])
def test_paths_out_of_the_store_are_refused(web, api, bad):
    resp = upload(web, api.auth, {bad: b"x"})
    assert resp.status_code == 400, bad
    body = resp.get_json()
    assert (body["code"], body["subcode"]) == (400, 1501) and body["field"] == "path"


@pytest.mark.parametrize("bad", ["a%5C..%5C..%5Cx", "a/%2E%2E/%2E%2E/etc/passwd", "C:%5Cx"])
def test_paths_in_urls_are_confined_too(web, api, bad):
    for method in ("get", "delete"):
        resp = getattr(web, method)(f"/files/{bad}", headers={"Authorization": api.auth})
        assert resp.status_code == 400, (method, bad)


def test_an_absolute_looking_path_stays_inside_the_company_folder(web, api, files):
    marker = f"etc-{uuid4().hex[:6]}/passwd"
    assert upload(web, api.auth, {f"/{marker}": b"not the system's"}).get_json() == [marker]
    assert company_file(files, api_company(api), marker) == b"not the system's"
    assert not os.path.exists(f"/{marker}")


def api_company(api) -> str:
    return api.call("users.get_current_user")["user"]["company"]["id"]


def test_size_limit_is_413_and_leaves_nothing(web, api, files, monkeypatch):
    monkeypatch.setattr(files, "max_upload_bytes", 1024 * 1024)
    first, second = unique("ok.bin"), unique("big.bin")
    resp = upload(web, api.auth, {first: b"x" * 1000, second: b"y" * (1024 * 1024)})
    assert resp.status_code == 413
    assert resp.get_json()["message_code"] == "payload_too_large.request_too_large"
    company = api_company(api)
    assert company_file(files, company, first) is None  # all or nothing: the first file went too
    assert company_file(files, company, second) is None
    assert not any((files.store.root / ".incoming").iterdir())
    # a declared body far above the limit is refused before it is read
    big = web.post("/files/", data=b"z" * (3 * 1024 * 1024), headers={
        "Authorization": api.auth, "Content-Type": "multipart/form-data; boundary=xyz"})
    assert big.status_code == 413


def test_the_global_body_limit_does_not_cap_the_file_server(web, api, app, files, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 1024)
    path = unique()
    assert upload(web, api.auth, {path: b"q" * 200_000}).status_code == 200
    assert len(web.get(f"/files/{path}", headers={"Authorization": api.auth}).data) == 200_000


def test_credentials(web, api, files, monkeypatch):
    path = unique("secret.txt")
    assert upload(web, None, {path: b"x"}).status_code == 401
    assert upload(web, api.auth, {path: b"x"}).status_code == 200
    assert web.delete(f"/files/{path}").status_code == 401
    assert web.post("/files/delete_many", json={"files": [path]}).status_code == 401
    assert web.get(f"/files/{path}").status_code == 401
    assert web.get(f"/files/{path}", headers={"Authorization": "Bearer nonsense"}).status_code == 401
    assert web.get(f"/files/{path}", headers={"Authorization": basic(ADMIN_KEY, ADMIN_SECRET)}).data == b"x"
    # the web app's session cookie reads (browsers send no Authorization on <img src>)
    token = api.auth.split()[1]
    web.set_cookie("clearml_token_basic", token)
    assert web.get(f"/files/{path}").data == b"x"
    web.delete_cookie("clearml_token_basic")
    monkeypatch.setattr(files, "public_read", True)
    assert web.get(f"/files/{path}").data == b"x"
    assert web.delete(f"/files/{path}").status_code == 401  # public_read is about reads only


def test_files_belong_to_the_company_that_wrote_them(web, api, other_api, files):
    path = unique("weights.bin")
    assert upload(web, api.auth, {path: b"mine"}).status_code == 200
    assert web.get(f"/files/{path}", headers={"Authorization": other_api.auth}).status_code == 404
    assert web.delete(f"/files/{path}", headers={"Authorization": other_api.auth}).status_code == 404
    out = web.post("/files/delete_many", json={"files": [path, path.split("/")[0]]},
                   headers={"Authorization": other_api.auth}).get_json()
    assert out["deleted"] == {} and sorted(out["errors"]["Not found"]) == sorted([path, path.split("/")[0]])
    assert upload(web, other_api.auth, {path: b"theirs"}).status_code == 200
    assert web.get(f"/files/{path}", headers={"Authorization": api.auth}).data == b"mine"
    assert web.get(f"/files/{path}", headers={"Authorization": other_api.auth}).data == b"theirs"


@pytest.mark.parametrize(("name", "inline"), [
    ("page.html", False), ("drawing.svg", False), ("script.js", False), ("data.bin", False), ("a.csv.gz", False),
    ("photo.png", True), ("photo.jpeg", True), ("notes.txt", True), ("values.json", True)])
def test_only_images_text_and_json_are_shown_inline(web, api, name, inline):
    path = unique(name)
    upload(web, api.auth, {path: b"<html><script>alert(1)</script></html>"})
    resp = web.get(f"/files/{path}", headers={"Authorization": api.auth})
    assert resp.status_code == 200
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Disposition"].startswith("inline" if inline else "attachment")
    assert "sandbox" in resp.headers["Content-Security-Policy"]
    forced = web.get(f"/files/{path}?download", headers={"Authorization": api.auth})
    assert forced.headers["Content-Disposition"].startswith("attachment")


def test_delete_many_files_and_folders(web, api, files):
    folder = f"t-{uuid4().hex[:8]}"
    upload(web, api.auth, {f"{folder}/a/1.bin": b"1", f"{folder}/a/2.bin": b"2", f"{folder}/b.bin": b"3"})
    out = web.post("/files/delete_many", headers={"Authorization": api.auth}, json={
        "files": [f"{folder}/a", f"{folder}/b.bin", f"{folder}/missing", "", f"{folder}/../x"]}).get_json()
    assert out["deleted"] == {f"{folder}/a": f"{folder}/a", f"{folder}/b.bin": f"{folder}/b.bin"}
    assert out["errors"]["Not found"] == [f"{folder}/missing"]
    assert out["errors"]["Empty path not allowed"] == [""]
    assert sum(len(v) for v in out["errors"].values()) == 3
    assert not (files.store.root / api_company(api) / folder).exists()  # empty folders are pruned


# -- files of deleted owners --------------------------------------------------------------------

def files_url(path: str) -> str:
    return f"http://localhost/files/{path}"  # the test client's host


def owned_task(api, web, project: str | None = None) -> tuple[str, dict[str, str]]:
    """A task with an artifact, a debug image and an output model, each a file of the store."""
    task = api.call("tasks.create", name="owner", type="training", **({"project": project} if project else {}))["id"]
    return task, own_files(api, web, task)


def own_files(api, web, task: str) -> dict[str, str]:
    """Give the task an artifact, a debug image and an output model, each a file of the store."""
    paths = {kind: f"p-{task}/{kind}.bin" for kind in ("artifact", "image", "model")}
    assert upload(web, api.auth, {p: kind.encode() for kind, p in paths.items()}).status_code == 200
    api.call("tasks.add_or_update_artifacts", task=task, artifacts=[
        {"key": "a", "type": "custom", "uri": files_url(paths["artifact"])},
        {"key": "elsewhere", "type": "custom", "uri": "s3://bucket/not-ours.bin"}])
    api.call("events.add", task=task, type="training_debug_image", metric="m", variant="v", iter=1,
             url=files_url(paths["image"]))
    api.call("models.update_for_task", task=task, uri=files_url(paths["model"]), name="out")
    return paths


def test_deleting_a_task_deletes_its_files_after_its_records(web, api, other_api, files, monkeypatch):
    monkeypatch.setattr(files, "delete_delay_sec", 0)
    task, paths = owned_task(api, web)
    # another company's file at the same path must survive
    assert upload(web, other_api.auth, {paths["artifact"]: b"theirs"}).status_code == 200
    model = api.call("models.get_all", task=[task])["models"][0]["id"]
    out = api.call("tasks.delete", task=task, force=True, return_file_urls=True)
    assert out["deleted"] is True and out["deleted_models"] == 1
    # the events' files are deleted here, not named (as ClearML now answers)
    assert out["urls"] == {"artifact_urls": [files_url(paths["artifact"]), "s3://bucket/not-ours.bin"],
                           "event_urls": [], "model_urls": [files_url(paths["model"])]}
    assert api.error("models.get_by_id", model=model).subcode == 201
    files.process_due_deletions()
    company = api_company(api)
    assert all(company_file(files, company, p) is None for p in paths.values())
    assert web.get(f"/files/{paths['artifact']}", headers={"Authorization": other_api.auth}).data == b"theirs"


def test_deleting_a_report_or_a_pipeline_run_deletes_what_it_owns(web, api, files, monkeypatch):
    """Reports and ClearML pipeline runs are tasks: deleting one goes the way of tasks.delete, so its
    output models and the files of its artifacts, images and models go too (they were left behind)."""
    monkeypatch.setattr(files, "delete_delay_sec", 0)
    company = api_company(api)
    report = api.call("reports.create", name=f"owning report {uuid4().hex[:6]}")["id"]
    report_paths = own_files(api, web, report)
    report_model = api.call("models.get_all", task=[report])["models"][0]["id"]
    assert api.call("reports.delete", task=report, force=True) == {"deleted": 1}

    project = api.call("projects.create", name=f"pipe-{uuid4().hex[:6]}")["id"]
    run, kept = (api.call("tasks.create", name=n, type="controller", project=project)["id"] for n in ("r1", "r2"))
    step = api.call("tasks.create", name="step", type="training", project=project, parent=run)["id"]
    run_paths, step_paths = own_files(api, web, run), own_files(api, web, step)
    models = [m["id"] for m in api.call("models.get_all", task=[run, step])["models"]]
    out = api.call("pipelines.delete_runs", project=project, ids=[run], include_pipeline_steps=True)
    assert out["succeeded"][0]["deleted_steps"] == 1 and out["succeeded"][0]["deleted_models"] == 2, out

    for model in [report_model, *models]:
        assert api.error("models.get_by_id", model=model).subcode == 201
    files.process_due_deletions()
    assert [company_file(files, company, p) for p in [*report_paths.values(), *run_paths.values(),
                                                       *step_paths.values()]] == [None] * 9
    assert api.call("tasks.get_by_id", task=kept)["task"]["id"] == kept


def test_a_reset_deletes_the_files_of_the_output_artifacts_it_drops(web, api, files, monkeypatch):
    monkeypatch.setattr(files, "delete_delay_sec", 0)
    task, paths = owned_task(api, web)
    out = api.call("tasks.reset", task=task, return_file_urls=True)
    assert files_url(paths["artifact"]) in out["urls"]["artifact_urls"]
    assert api.call("tasks.get_by_id", task=task)["task"]["execution"].get("artifacts") in (None, [], {})
    files.process_due_deletions()
    assert company_file(files, api_company(api), paths["artifact"]) is None


def test_a_storage_failure_never_leaves_records_half_deleted(web, api, files, monkeypatch):
    monkeypatch.setattr(files, "delete_delay_sec", 0)
    task, paths = owned_task(api, web)
    real_delete = files.store.delete

    def broken(key):
        raise OSError("disk on fire")

    monkeypatch.setattr(files.store, "delete", broken)
    assert api.call("tasks.delete", task=task, force=True)["deleted"] is True
    assert api.error("tasks.get_by_id", task=task).subcode == 101
    assert api.call("models.get_all", task=[task])["models"] == []
    done, failed = files.process_due_deletions()
    assert failed >= 3
    waiting = [d for d in files.pending_deletions(api_company(api)) if d["path"] in paths.values()]
    assert sorted(d["path"] for d in waiting) == sorted(paths.values())
    assert all(d["attempts"] == 1 and "disk on fire" in d["last_error"] for d in waiting)
    monkeypatch.setattr(files.store, "delete", real_delete)
    FileDeletion._get_collection().update_many({"path": {"$in": list(paths.values())}}, {"$set": {"due": utcnow()}})
    files.process_due_deletions()
    company = api_company(api)
    assert all(company_file(files, company, p) is None for p in paths.values())
    assert files.pending_deletions(company) == []


def test_a_model_file_goes_with_its_last_model(web, api, files, monkeypatch):
    monkeypatch.setattr(files, "delete_delay_sec", 0)
    path = unique("shared.bin")
    upload(web, api.auth, {path: b"w"})
    first = api.call("models.create", name="one", uri=files_url(path))["id"]
    second = api.call("models.create", name="two", uri=files_url(path))["id"]
    assert api.call("models.delete", model=first) == {"deleted": True, "url": files_url(path)}
    files.process_due_deletions()
    assert company_file(files, api_company(api), path) == b"w"  # the second model still uses it
    api.call("models.delete", model=second)
    files.process_due_deletions()
    assert company_file(files, api_company(api), path) is None


def test_deleting_a_project_with_its_contents_deletes_their_files(web, api, files, monkeypatch):
    monkeypatch.setattr(files, "delete_delay_sec", 0)
    project = api.call("projects.create", name=f"owned-{uuid4().hex[:6]}")["id"]
    task, paths = owned_task(api, web, project)
    loose = unique("loose.bin")
    upload(web, api.auth, {loose: b"l"})
    api.call("models.create", name="loose", uri=files_url(loose), project=project)
    assert api.error("projects.delete", project=project).subcode == 402  # tasks (and models) in it, no force
    out = api.call("projects.delete", project=project, force=True, delete_contents=True, return_file_urls=True)
    assert out["deleted"] == 1 and out["deleted_tasks"] == 1 and out["deleted_models"] == 2
    assert files_url(loose) in out["urls"]["model_urls"]
    files.process_due_deletions()
    company = api_company(api)
    assert all(company_file(files, company, p) is None for p in [*paths.values(), loose])


def test_delete_external_artifacts_false_keeps_the_files(web, api, files, monkeypatch):
    monkeypatch.setattr(files, "delete_delay_sec", 0)
    task, paths = owned_task(api, web)
    api.call("tasks.delete", task=task, force=True, delete_external_artifacts=False)
    files.process_due_deletions()
    assert company_file(files, api_company(api), paths["artifact"]) == b"artifact"


def test_debug_images_by_iteration_with_scroll(api):
    task = api.call("tasks.create", name="images", type="training")["id"]
    for it in range(5):
        for variant in ("a", "b"):
            api.call("events.add", task=task, type="training_debug_image", metric="m", variant=variant, iter=it,
                     url=files_url(f"img/{variant}_{it}.png"))
    api.call("events.add", task=task, type="training_debug_image", metric="other", variant="a", iter=9,
             url=files_url("img/other.png"))
    first = api.call("events.debug_images", metrics=[{"task": task, "metric": "m"}], iters=2)
    iterations = first["metrics"][0]["iterations"]
    assert [i["iter"] for i in iterations] == [4, 3]
    assert [e["variant"] for e in iterations[0]["events"]] == ["a", "b"]
    assert iterations[0]["events"][1]["url"] == files_url("img/b_4.png")
    second = api.call("events.debug_images", metrics=[{"task": task, "metric": "m"}], iters=2,
                      scroll_id=first["scroll_id"])
    assert [i["iter"] for i in second["metrics"][0]["iterations"]] == [2, 1]
    # a scroll keeps the metrics and variants it began with (as ClearML): asking for fewer changes nothing
    third = api.call("events.debug_images", metrics=[{"task": task, "metric": "m", "variants": ["b"]}], iters=5,
                     scroll_id=second["scroll_id"])
    assert [(i["iter"], len(i["events"])) for i in third["metrics"][0]["iterations"]] == [(0, 2)]
    done = api.call("events.debug_images", metrics=[{"task": task, "metric": "m"}], iters=2,
                    scroll_id=third["scroll_id"])
    assert done["metrics"][0]["iterations"] == []
    everything = api.call("events.debug_images", metrics=[{"task": task}], iters=1, navigate_earlier=False)
    assert [i["iter"] for i in everything["metrics"][0]["iterations"]] == [9]  # a first call starts at the latest
    oldest = api.call("events.debug_images", metrics=[{"task": task, "metric": "m", "variants": ["b"]}], iters=5,
                      navigate_earlier=False, scroll_id=third["scroll_id"], refresh=True)
    assert [(i["iter"], [e["variant"] for e in i["events"]]) for i in oldest["metrics"][0]["iterations"]] == [
        (4, ["b"]), (3, ["b"]), (2, ["b"]), (1, ["b"]), (0, ["b"])]  # refreshed: the variants asked for now


# -- the two stores behind one interface --------------------------------------------------------

@pytest.fixture(params=["local", "gridfs"])
def store(request, tmp_path, app):
    from apiserver.database.filestore import GridFSStore, LocalStore

    if request.param == "local":
        return LocalStore(tmp_path)
    return GridFSStore(get_state().db, bucket=f"test{uuid4().hex[:8]}", chunk_size=1000)


def stored_bytes(store, key: str) -> bytes | None:
    found = store.stat(key)
    if found is None:
        return None
    with found.open() as f:
        return f.read()


def test_store_two_phase_uploads(store):
    first = store.begin("co/a/b.bin")
    first.write(b"x" * 2500)
    assert first.finish() == 2500
    assert store.stat("co/a/b.bin") is None  # finished but not published: nobody sees it
    first.publish()
    assert stored_bytes(store, "co/a/b.bin") == b"x" * 2500
    replaced = store.begin("co/a/b.bin")
    replaced.write(b"new")
    replaced.finish()
    assert stored_bytes(store, "co/a/b.bin") == b"x" * 2500
    replaced.publish()
    assert stored_bytes(store, "co/a/b.bin") == b"new"
    aborted = store.begin("co/a/c.bin")
    aborted.write(b"half")
    aborted.abort()
    assert store.stat("co/a/c.bin") is None
    finished_then_aborted = store.begin("co/a/d.bin")
    finished_then_aborted.write(b"d")
    finished_then_aborted.finish()
    finished_then_aborted.abort()
    assert store.stat("co/a/d.bin") is None
    assert store.sweep_incoming(-1) == 0  # nothing unfinished is left behind
    assert store.is_folder("co/a") and not store.is_folder("co/a/b.bin")
    with store.stat("co/a/b.bin").open() as f:
        f.seek(1)
        assert f.read(2) == b"ew"
    assert store.delete_folder("co/a") == 1 and store.stat("co/a/b.bin") is None
    assert store.delete("co/a/b.bin") is False


def test_gridfs_upload_over_the_limit_leaves_no_chunks(api, monkeypatch):
    from apiserver.bll.files.files import FileBLL
    from apiserver.database.filestore import GridFSStore

    bucket = f"test{uuid4().hex[:8]}"
    state = get_state()
    grid = FileBLL(GridFSStore(state.db, bucket=bucket, chunk_size=1000),
                   dataclasses.replace(state.settings.files, max_upload_size_mb=0.01))
    identity = state.tokens.verify(api.auth.split()[1])
    parts = iter([("a.bin", [b"x" * 4000]), ("b.bin", [b"y" * 4000] * 3)])
    with pytest.raises(Exception) as info:
        grid.upload(identity, parts, None)
    assert getattr(info.value, "code", None) == 413
    assert state.db[f"{bucket}.files"].count_documents({}) == 0
    assert state.db[f"{bucket}.chunks"].count_documents({}) == 0


def test_multipart_reader_handles_delimiters_split_across_reads(monkeypatch):
    from apiserver.service_repo import multipart

    class Trickle(io.BytesIO):
        def read(self, size=-1):
            return super().read(7)

    monkeypatch.setattr(multipart, "BLOCK", 7)
    body = (b"preamble\r\n--B\r\nContent-Disposition: form-data; name=\"field\"\r\n\r\nvalue\r\n--B  \r\n"
            b"Content-Disposition: form-data; name=\"x/1\"; filename=\"1\"\r\nContent-Type: a/b\r\n\r\n"
            b"ab\r\n-\r\n-B\r\n--B\r\n"
            b"Content-Disposition: form-data; name=\"x/2\"; filename=\"2\"\r\n\r\n\r\n--B--")
    parts = [(name, b"".join(bytes(c) for c in chunks))
             for name, chunks in multipart.iter_file_parts(Trickle(body), "multipart/form-data; boundary=B")]
    assert parts == [("x/1", b"ab\r\n-\r\n-B"), ("x/2", b"")]
    with pytest.raises(Exception, match="ends inside a part"):
        for _, chunks in multipart.iter_file_parts(Trickle(body[:140]), "multipart/form-data; boundary=B"):
            list(chunks)
    with pytest.raises(Exception, match="multipart/form-data"):
        next(multipart.iter_file_parts(Trickle(body), "application/json"))


def test_file_endpoints_answer_only_at_their_paths(api):
    # the RPC form would read a JSON body; stream endpoints exist only at /files/...
    status, body = api.envelope("files.download", path="x")
    assert status == 404 and body["meta"]["result_code"] == 404
    doc = api.request("GET", "/openapi.json")[1]
    assert "/files/{path}" in doc["paths"] and "multipart/form-data" in \
        doc["paths"]["/files/"]["post"]["requestBody"]["content"]
