"""The spec loader: the ClearML reference loads as it is, and every kind of broken spec stops start-up."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from apiserver.schema.loader import SERVICES_DIR, SpecError, check_enums, load_service, load_specs
from apiserver.service_repo.endpoint import Binding, bind_handlers

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "tasks.conf.txt"


def reference_hocon() -> str:
    """The reference file is a web mirror of ClearML's tasks.conf: drop the page's header lines
    (everything before ``_description``) and the trailing ``|`` of the page; the HOCON is untouched."""
    text = REFERENCE.read_text()
    body = text[text.index("_description:"):]
    return re.sub(r"\s*\|\s*$", "\n", body)


@pytest.fixture()
def services(tmp_path) -> Path:
    shutil.copy(SERVICES_DIR / "_common.conf", tmp_path / "_common.conf")
    return tmp_path


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.mark.skipif(not REFERENCE.exists(), reason="shared/reference is not beside this checkout")
def test_clearml_reference_tasks_conf_loads(services):
    path = write(services, "tasks.conf", reference_hocon())
    specs = {s.name: s for s in load_service(path)}
    assert len(specs) == 26
    assert specs["tasks.get_all_ex"].internal is True
    # `"2.1": ${get_all."2.1"}` copies the whole version block
    assert specs["tasks.get_all_ex"].request_schema == specs["tasks.get_all"].request_schema
    # `request = {...} ${_references.status_change_request}` merges objects
    reset = specs["tasks.reset"].request_schema["properties"]
    assert {"task", "force", "clear_all", "status_reason", "status_message"} <= set(reset)
    # `force = ${_references.force_arg} {description: ...}` merges the reference with the override
    assert reset["force"]["type"] == "boolean" and "completed" in reset["force"]["description"]
    # $refs reach definitions (transitively) and nothing else is embedded
    assert set(specs["tasks.get_all"].request_schema["definitions"]) == {"multi_field_pattern_data", "task_status_enum"}
    assert "artifact_type_data" in specs["tasks.get_by_id"].response_schema["definitions"]
    assert specs["tasks.update_batch"].batch_action == ("tasks.update", (1, 5))
    assert specs["tasks.enqueue"].version == (1, 5)


def test_project_services_load_and_every_endpoint_has_one_handler():
    from apiserver.service_repo.endpoint import import_handlers

    registry = load_specs()
    import_handlers()
    table = bind_handlers(registry)
    assert set(table) == {(s.name, s.version) for s in registry.all()}


@pytest.mark.parametrize("text, expected", [
    ("broken { type: ", r"bad\.conf line \d+.*cannot parse HOCON"),
    ('a { "2.1" { request: ${_nowhere.thing} } }', r"bad\.conf.*cannot parse HOCON.*_nowhere"),
    ('a { "2.1" { request { "$ref": "#/definitions/missing" } } }',
     r"bad\.conf: endpoint bad\.a version 2\.1 request: \$ref '#/definitions/missing' names a missing definition"),
    ('a { "2.x" { } }', r"endpoint bad\.a version 2\.x: unknown key"),
    ('a { "2.1" { reqest { type: object } } }', r"endpoint bad\.a version 2\.1: unknown keys \['reqest'\]"),
    ('a { "2.1" { request { type: objekt } } }', r"endpoint bad\.a version 2\.1 request: invalid JSON Schema"),
    ('a { internal: true }', r"endpoint bad\.a: declares no version"),
    ('a { "2.1" { http { method: FETCH, path: "/x" } } }', r"bad\.a version 2\.1: http\.method 'FETCH'"),
    ('a { "2.1" { allow_roles: [wizard] } }', r"allow_roles names unknown roles \['wizard'\]"),
    ('a { "2.1" { batch_request { action: nothing, version: 1.0, max_items: 10 } } }',
     r"batch_request names bad\.nothing"),
    ('a { "2.1" { http { method: GET, path: "/x/{id}" } } }\nb { "2.1" { http { method: GET, path: "/x/{key}" } } }',
     r"http GET /x/\{key\} is already bound to bad\.a"),
])
def test_broken_specs_name_file_endpoint_and_problem(services, text, expected):
    write(services, "bad.conf", text)
    with pytest.raises(SpecError, match=expected):
        load_specs(services)


def test_handler_problems_stop_startup(services):
    write(services, "ex.conf", 'one { "2.1" { } }\ntwo { "2.1" { } }')
    registry = load_specs(services)

    def first(call):
        return {}

    def second(call):
        return {}

    with pytest.raises(SpecError, match=r"ex\.conf: endpoint ex\.two version 2\.1 has no handler"):
        bind_handlers(registry, [Binding("ex.one", None, first)])
    with pytest.raises(SpecError, match=r"endpoint ex\.one: two handlers \(.*first and .*second\)"):
        bind_handlers(registry, [Binding("ex.one", None, first), Binding("ex.one", None, second),
                                 Binding("ex.two", None, first)])
    with pytest.raises(SpecError, match=r"handler .*first is bound to ex\.three, which no service file declares"):
        bind_handlers(registry, [Binding("ex.one", None, first), Binding("ex.two", None, first),
                                 Binding("ex.three", None, first)])


def test_min_version_handlers_split_versions(services):
    write(services, "ex.conf", 'one { "2.1" { }\n "2.5" { }\n "2.9" { } }')
    registry = load_specs(services)

    def old(call):
        return {}

    def new(call):
        return {}

    table = bind_handlers(registry, [Binding("ex.one", None, old), Binding("ex.one", (2, 5), new)])
    assert table[("ex.one", (2, 1))] is old
    assert table[("ex.one", (2, 5))] is new and table[("ex.one", (2, 9))] is new


def test_app_refuses_a_version_above_the_server_maximum(services, monkeypatch):
    from apiserver import app as app_module
    from apiserver.config import load_config

    write(services, "ex.conf", 'one { "2.1" { }\n "3.0" { } }')
    monkeypatch.setattr(app_module, "load_specs", lambda: load_specs(services))
    expected = r"ex\.conf: endpoint ex\.one declares version 3\.0, above the server.s maximum"
    with pytest.raises(SpecError, match=expected):
        app_module.build_dispatcher(load_config(), None)


def test_integer_rules_shared_by_every_request_schema():
    from apiserver.schema.normalize import INT32, INT64, TIMESTAMP_MS, bound_integers, integers_from_floats

    schema = bound_integers({
        "type": "object",
        "properties": {
            "page": {"type": "integer", "minimum": 0}, "n": {"type": "integer"},
            "timestamp": {"type": ["integer", "null"]}, "cap": {"type": "integer", "exclusiveMaximum": 9},
            "ref": {"$ref": "#/definitions/counted"}, "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "list": {"type": "array", "items": {"type": "integer"}}, "ratio": {"type": "number"},
            "free": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
        "definitions": {"counted": {"type": "object", "properties": {"page_size": {"type": "integer"}}}},
    })
    props = schema["properties"]
    assert (props["page"]["minimum"], props["page"]["maximum"]) == (0, INT32[1])
    assert (props["n"]["minimum"], props["n"]["maximum"]) == INT64
    assert (props["timestamp"]["minimum"], props["timestamp"]["maximum"]) == TIMESTAMP_MS
    assert "maximum" not in props["cap"] and props["cap"]["minimum"] == INT64[0]
    assert schema["definitions"]["counted"]["properties"]["page_size"]["maximum"] == INT32[1]
    assert "maximum" not in props["ratio"]
    data = {"page": 2.0, "n": 3.5, "ref": {"page_size": 10.0}, "either": 4.0, "list": [1.0, 2],
            "ratio": 1.0, "free": {"a": 5.0}, "extra": 6.0}
    out = integers_from_floats(schema, data)
    assert out == {"page": 2, "n": 3.5, "ref": {"page_size": 10}, "either": 4, "list": [1, 2], "ratio": 1.0,
                   "free": {"a": 5}, "extra": 6.0}
    assert [type(out[k]) for k in ("page", "either", "ratio", "extra")] == [int, int, float, float]
    assert type(out["ref"]["page_size"]) is int and type(out["list"][0]) is int


def test_stream_endpoints_rest_of_path_params_and_optional_auth(services):
    path = write(services, "files.conf", """
        get {
          authorize: optional
          "2.1" {
            http { method: GET, path: "/files/{path:path}", status: 200, style: stream }
            request { type: object, required: [path], properties { path { type: string } } }
          }
        }
    """)
    spec = load_service(path)[0]
    assert (spec.http.path, spec.http.path_params, spec.http.style) == ("/files/<path:path>", ("path",), "stream")
    assert spec.authorize and spec.auth_optional
    bad = write(services, "bad.conf", 'x { authorize: sometimes, "2.1" { request { type: object } } }')
    with pytest.raises(SpecError, match="authorize is true, false or optional"):
        load_service(bad)


def test_a_spec_enum_that_disagrees_with_the_codes_set_stops_start_up(tmp_path):
    """Statuses and roles live in the code (bll); the .conf enums that repeat them are checked at
    start-up, so one side cannot change alone."""
    from apiserver.app import SPEC_FACTS

    check_enums(load_specs(SERVICES_DIR), SPEC_FACTS)  # the shipped specs agree
    copy = tmp_path / "services"
    shutil.copytree(SERVICES_DIR, copy)
    tasks = copy / "tasks.conf"
    tasks.write_text(tasks.read_text().replace("completed, unknown]", "completed, unknown, paused]", 1))
    with pytest.raises(SpecError, match=r"tasks.conf: definition task_status_enum lists .*'paused'.*code's set is "
                                        r"\['created'"):
        check_enums(load_specs(copy), SPEC_FACTS)
    shutil.copy(SERVICES_DIR / "tasks.conf", tasks)
    common = copy / "_common.conf"
    common.write_text(common.read_text().replace("annotator, guest]", "guest, annotator]"))
    with pytest.raises(SpecError, match="role_enum"):
        check_enums(load_specs(copy), SPEC_FACTS)


def test_parsed_files_are_cached_until_the_file_or_an_include_changes(services, tmp_path, monkeypatch):
    """Every server start parses the service files; the parsed form is kept in a cache folder under a key
    of the file's and its includes' bytes, so an unchanged file is read back, and a change to the file
    or to an include is parsed again. A damaged cache entry is parsed again too."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    spec = '''
_definitions { include "_common.conf" }
ping { "2.1" { request { type: object, properties { n { type: integer, maximum: %d } } }, response { type: object } } }
'''
    path = write(services, "demo.conf", spec % 5)
    maximum = lambda: load_service(path)[0].request_schema["properties"]["n"]["maximum"]  # noqa: E731
    assert maximum() == 5
    entries = sorted((cache / "apiserver" / "specs").glob("*.json"))
    assert len(entries) == 1
    assert maximum() == 5 and sorted((cache / "apiserver" / "specs").glob("*.json")) == entries  # read back
    write(services, "demo.conf", spec % 7)
    assert maximum() == 7  # the file changed: parsed again, a second entry
    (services / "_common.conf").write_text((services / "_common.conf").read_text() + "\n# changed\n")
    assert maximum() == 7 and len(list((cache / "apiserver" / "specs").glob("*.json"))) == 3  # an include
    for entry in (cache / "apiserver" / "specs").glob("*.json"):
        entry.write_text("{not json")
    assert maximum() == 7
