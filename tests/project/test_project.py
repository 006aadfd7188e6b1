"""Finding the project and reading wistro.yml: errors name the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from projects import step, write_project

from wistro.errors import ConfigError, ProjectNotFound
from wistro.project.paths import find_root, load_project


def test_root_is_found_from_a_subfolder(tmp_path: Path) -> None:
    write_project(tmp_path, {"wistro.yml": "name: shop\n", "src/a/b/x.txt": ""})
    assert find_root(tmp_path / "src" / "a" / "b") == tmp_path


def test_a_src_folder_with_steps_is_a_project_without_config(tmp_path: Path) -> None:
    write_project(tmp_path, {"src/x.step.py": step("X", ["t"])})
    project = load_project(tmp_path / "src")
    assert project.root == tmp_path
    assert project.config.state.adapter == "file"
    assert project.name == tmp_path.name


def test_no_project_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ProjectNotFound, match="no Wistro project in"):
        find_root(tmp_path)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    write_project(tmp_path, {"wistro.yml": "name: shop\nflows:\n  checkout: {name: [\n"})
    with pytest.raises(ConfigError) as e:
        load_project(tmp_path)
    assert str(e.value).startswith("wistro.yml:") or "wistro.yml:" in str(e.value)
    assert e.value.line is not None and e.value.line >= 3
    assert "YAML syntax error" in str(e.value)


def test_unknown_key_names_the_key_path_and_line(tmp_path: Path) -> None:
    write_project(tmp_path, {"wistro.yml": "name: shop\nstate:\n  adaptor: file\n"})
    with pytest.raises(ConfigError) as e:
        load_project(tmp_path)
    assert e.value.field == "state.adaptor"
    assert e.value.line == 3
    assert "unknown key" in str(e.value)


def test_wrong_type_names_the_field(tmp_path: Path) -> None:
    write_project(tmp_path, {"wistro.yml": "name: shop\ninactive: 5\n"})
    with pytest.raises(ConfigError) as e:
        load_project(tmp_path)
    assert e.value.field == "inactive" and e.value.line == 2


def test_variables_env_file_and_environment_overlay(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("WISTRO_TEST_URL", raising=False)
    write_project(
        tmp_path,
        {
            "wistro.yml": """
            name: ${SHOP_NAME:-shop}
            state: {adapter: memory}
            environments:
              prod:
                env_file: .env.prod
                state: {adapter: file, path: "${WISTRO_TEST_DIR}"}
        """,
            ".env.prod": "# prod settings\nexport WISTRO_TEST_DIR='/tmp/prod-state'\n",
        },
    )
    dev = load_project(tmp_path)
    assert dev.name == "shop" and dev.config.state.adapter == "memory"
    prod = load_project(tmp_path, env="prod")
    assert prod.config.state.adapter == "file"
    assert prod.config.state.path == "/tmp/prod-state"
    assert prod.env_vars == {"WISTRO_TEST_DIR": "/tmp/prod-state"}


def test_a_missing_variable_names_it_and_the_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    write_project(tmp_path, {"wistro.yml": "name: a\nstate:\n  url: ${NOPE_NOT_SET}\n"})
    with pytest.raises(ConfigError) as e:
        load_project(tmp_path)
    assert "${NOPE_NOT_SET}" in str(e.value) and e.value.line == 3


def test_unknown_environment_lists_the_known_ones(tmp_path: Path) -> None:
    write_project(tmp_path, {"wistro.yml": "environments:\n  prod: {}\n  staging: {}\n"})
    with pytest.raises(ConfigError, match=r"unknown environment 'qa' \(known: prod, staging\)"):
        load_project(tmp_path, env="qa")


def test_wistro_json_is_read_too(tmp_path: Path) -> None:
    write_project(tmp_path, {"wistro.json": '{"name": "j", "src": "steps"}'})
    project = load_project(tmp_path)
    assert project.name == "j" and project.src == tmp_path / "steps"


def test_invalid_json_config_names_the_line(tmp_path: Path) -> None:
    write_project(tmp_path, {"wistro.json": '{\n"name": "j",\n}'})
    with pytest.raises(ConfigError) as e:
        load_project(tmp_path)
    assert e.value.line == 3 and "wistro.json" in str(e.value)
