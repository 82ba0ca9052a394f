from pathlib import Path

import pytest

from pipeline.config import ConfigError, Settings, load_settings
from tests.conftest import REPO


def test_example_config_lists_the_defaults():
    """pitfall.toml documents every setting with its default value."""
    from_file = load_settings(REPO / "pitfall.toml").model_dump(exclude={"config_file"})
    assert from_file == Settings().model_dump(exclude={"config_file"})


def test_every_section_and_key_is_in_the_example():
    import tomllib

    example = tomllib.loads((REPO / "pitfall.toml").read_text())
    for section, model in Settings.model_fields.items():
        if section == "config_file":
            continue
        assert section in example, section
        fields = set(model.annotation.model_fields)
        # optional keys without a value are shown commented out
        assert set(example[section]) == {f for f in fields if getattr(model.default, f) is not None}


def test_precedence_file_then_env_then_flags(tmp_path, monkeypatch):
    cfg = tmp_path / "p.toml"
    cfg.write_text('[dart]\nk_u = 7\nstrategy = "prop2diff"\n[store]\npath = "a.duckdb"\n')
    s = load_settings(cfg)
    assert (s.dart.k_u, s.dart.strategy, s.store.path) == (7, "prop2diff", Path("a.duckdb"))

    monkeypatch.setenv("PITFALL_DART__K_U", "9")
    s = load_settings(cfg)
    assert (s.dart.k_u, s.dart.strategy) == (9, "prop2diff")

    s = load_settings(cfg, {"dart": {"k_u": 11}, "store": {"path": "b.duckdb"}})
    assert (s.dart.k_u, s.dart.strategy, s.store.path) == (11, "prop2diff", Path("b.duckdb"))


def test_cli_store_variable_is_not_a_settings_key(monkeypatch):
    # PITFALL_STORE is the CLI's --store envvar; it must not be parsed as the [store] table
    monkeypatch.setenv("PITFALL_STORE", "elsewhere.duckdb")
    assert load_settings(None).store.path == Path("data/store/pitfall.duckdb")


def test_unknown_key_names_key_and_file(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[dart]\nk_uu = 3\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg)
    assert "unknown key 'dart.k_uu'" in str(exc.value)
    assert str(cfg) in str(exc.value)


def test_unknown_section_is_an_error(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[dartt]\nk_u = 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'dartt'"):
        load_settings(cfg)


def test_unknown_key_from_environment_names_the_variable(monkeypatch):
    monkeypatch.setenv("PITFALL_VERIFY__TIMEOUT", "3")
    with pytest.raises(
        ConfigError, match=r"environment variable PITFALL_VERIFY__TIMEOUT: unknown key"
    ):
        load_settings(None)


def test_bad_value_is_explained(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[dart]\nstrategy = "greedy"\n')
    with pytest.raises(ConfigError, match=r"bad.toml: 'dart.strategy'"):
        load_settings(cfg)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[store\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken)


def test_credentials_in_urls_are_redacted_and_reach_the_flow_through_the_environment(
    monkeypatch,
):
    from pipeline.config import flow_settings, redact, redacted_settings, secret_env

    assert redact("at http://u:p@ss@127.0.0.1:8000/v1, mail a@b.c") == (
        "at http://***@127.0.0.1:8000/v1, mail a@b.c"
    )
    s = load_settings(None, {"teacher": {"base_url": "https://u:s3cr3t@api.example/v1"}})
    shown = redacted_settings(s, exclude={"config_file"})
    assert shown["teacher"]["base_url"] == "https://***@api.example/v1"
    assert "s3cr3t" not in str(shown) and shown["dart"] == s.dart.model_dump(mode="json")
    assert secret_env(s) == {"PITFALL_TEACHER__BASE_URL": "https://u:s3cr3t@api.example/v1"}
    with pytest.raises(ConfigError, match="set PITFALL_TEACHER__BASE_URL"):
        flow_settings(None, shown)
    monkeypatch.setenv("PITFALL_TEACHER__BASE_URL", "https://u:s3cr3t@other.example/v1")
    with pytest.raises(ConfigError, match="reaches the flow redacted"):
        flow_settings(None, shown)  # not the server the parameters name
    monkeypatch.setenv("PITFALL_TEACHER__BASE_URL", "https://u:s3cr3t@api.example/v1")
    assert flow_settings(None, shown).teacher.base_url == "https://u:s3cr3t@api.example/v1"


def test_library_defaults_are_the_settings_defaults():
    """Each default is declared once, in the settings (DartPlan had k_u 40, k_p 192,
    n_max 2048 while the settings said 4, 16, 64)."""
    import inspect

    from pipeline import config as c
    from pipeline.dart import DartPlan
    from pipeline.ingest import IngestLimits
    from pipeline.reweight import select_sft
    from pipeline.sampling import SamplingParams
    from pipeline.segment import segment

    assert DartPlan() == DartPlan.from_settings(c.DartSettings())
    assert SamplingParams() == SamplingParams.from_settings(c.TeacherSettings())
    assert IngestLimits() == IngestLimits.from_settings(c.ProblemsSettings())
    sft = {k: p.default for k, p in inspect.signature(select_sft).parameters.items()}
    d, r = c.DartSettings(), c.ReweightSettings()
    assert (sft["k_u"], sft["k_p"], sft["select"], sft["weight"], sft["floor"]) == (
        d.k_u,
        d.k_p,
        r.select,
        r.weight,
        r.weight_floor,
    )
    seg = {k: p.default for k, p in inspect.signature(segment).parameters.items()}
    s = c.SegmentSettings()
    assert (seg["mode"], seg["min_chars"], seg["max_steps"]) == (s.mode, s.min_chars, s.max_steps)
