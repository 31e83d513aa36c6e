"""Config: HOCON defaults, a layered folder, and environment overrides with typed values."""

from __future__ import annotations

import pytest

from apiserver.config import ConfigError, load_config


def test_defaults():
    cfg = load_config(env={})
    assert cfg["apiserver.listen"] == {"host": "127.0.0.1", "port": 8008}
    assert cfg["database.uri"] == ""
    assert cfg.get("apiserver.check_max_version") is False
    assert cfg.get("no.such.key", "fallback") == "fallback"
    with pytest.raises(KeyError):
        cfg["no.such.key"]


def test_env_overrides_are_typed_and_keep_plain_strings_whole():
    cfg = load_config(env={
        "APISERVER__apiserver__listen__port": "9000",
        "APISERVER__apiserver__check_max_version": "true",
        "APISERVER__database__uri": "mongodb://db1:27017,db2:27017/?replicaSet=rs0",
        "APISERVER__auth__token_secret": "has#hash//and spaces",
        "APISERVER__auth__fixed_users": '[{username: a, role: admin}]',
        "APISERVER__pipeline__member_urls__new_member": "http://10.0.0.5:9000",  # an open map: any key
        "UNRELATED": "x",
    })
    assert cfg["apiserver.listen.port"] == 9000
    assert cfg["apiserver.check_max_version"] is True
    assert cfg["database.uri"] == "mongodb://db1:27017,db2:27017/?replicaSet=rs0"
    assert cfg["auth.token_secret"] == "has#hash//and spaces"
    assert cfg["auth.fixed_users"] == [{"username": "a", "role": "admin"}]
    assert cfg["pipeline.member_urls.new_member"] == "http://10.0.0.5:9000"
    assert cfg["apiserver.listen.host"] == "127.0.0.1"  # siblings of an overridden key stay


def test_layered_config_dir(tmp_path):
    (tmp_path / "database.conf").write_text('name: "layered"\nembedded { cache_size: "1G" }\n')
    cfg = load_config(env={"APISERVER_CONFIG_DIR": str(tmp_path), "APISERVER__database__name": "from-env"})
    assert cfg["database.embedded.cache_size"] == "1G"
    assert cfg["database.embedded.host"] == "127.0.0.1"  # merged, not replaced
    assert cfg["database.name"] == "from-env"  # env wins over files


def test_a_misspelled_key_stops_loading_and_names_the_key(tmp_path):
    """A key the defaults do not declare was silently ignored; now it is an error naming the key,
    its source and the key it probably meant."""
    with pytest.raises(ConfigError, match=r"APISERVER__database__nmae.*'database.nmae' \(did you mean 'database.name'"):
        load_config(env={"APISERVER__database__nmae": "x"})
    with pytest.raises(ConfigError, match=r"'brand_new'"):
        load_config(env={"APISERVER__brand_new__nested__key": "1.5"})
    (tmp_path / "files.conf").write_text('local { dri: "/srv/files" }\n')
    with pytest.raises(ConfigError, match=r"config folder .*'files.local.dri' \(did you mean 'files.local.dir'"):
        load_config(env={"APISERVER_CONFIG_DIR": str(tmp_path)})
    (tmp_path / "files.conf").write_text('local { dir: "/srv/files" }\n')
    assert load_config(env={"APISERVER_CONFIG_DIR": str(tmp_path)})["files.local.dir"] == "/srv/files"


def test_bad_config_is_a_clear_error(tmp_path):
    (tmp_path / "database.conf").write_text("name: {unclosed\n")
    with pytest.raises(ConfigError, match="database.conf"):
        load_config(env={"APISERVER_CONFIG_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match="not a folder"):
        load_config(env={"APISERVER_CONFIG_DIR": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="APISERVER__x"):
        load_config(env={"APISERVER__x": "[unclosed"})
