import json

import pytest

from core.config import PipelineConfig, RunConfig, load_config_file, load_preset, preset_names


def test_defaults_are_valid_and_round_trip(tmp_path):
    cfg = RunConfig()
    assert cfg.model == "roberta-base"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg.to_dict()))
    assert load_config_file(path) == cfg


@pytest.mark.parametrize("field, value", [
    ("learning_rate", -1e-5), ("epochs", 0), ("batch_size", 0), ("truncation", "middle"),
    ("precision", "int4"), ("max_length", 4), ("validation_size", 1.5), ("scheduler", "zigzag"),
    ("warmup_ratio", 1.2), ("max_train_samples", 0), ("eval_windows", 0), ("eval_confidence", 0.3),
    ("eval_confidence", 1.5),
])
def test_bad_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        RunConfig(**{field: value})


def test_overrides_parse_strings_by_field_type():
    cfg = RunConfig().with_overrides({"epochs": "2", "learning_rate": "3e-5", "text_fields": "title,content",
                                      "max_train_samples": "none", "group_by_length": "false", "batch_size": "8"})
    assert (cfg.epochs, cfg.learning_rate, cfg.text_fields) == (2.0, 3e-5, ["title", "content"])
    assert cfg.max_train_samples is None and cfg.group_by_length is False and cfg.batch_size == 8
    with pytest.raises(ValueError, match="^batch_size: expected int"):
        RunConfig().with_overrides({"batch_size": "eight"})
    with pytest.raises(ValueError, match="^nonsense: not a RunConfig field"):
        RunConfig().with_overrides({"nonsense": "1"})


def test_pipeline_overrides_route_target_prefix():
    p = load_preset("offline-quick").with_overrides({"epochs": "2", "target.max_train_samples": "500"})
    assert p.source.epochs == 2 and p.target.epochs == 1
    assert p.target.max_train_samples == 500
    with pytest.raises(ValueError, match=r"^target\.learning_rate:"):
        p.with_overrides({"target.learning_rate": "-1"})
    assert PipelineConfig.from_dict(p.to_dict()).to_dict() == p.to_dict()


def test_stage_2_follows_stage_1s_model_precision_seed_and_hardware_unless_told():
    """The schema's rule, which the Train form and `pipeline --set` share."""
    p = load_preset("offline-quick").with_overrides({"precision": "fp32", "seed": "3", "learning_rate": "5e-5"})
    assert (p.target.precision, p.target.seed) == ("fp32", 3) and p.target.learning_rate == 1e-4
    p = load_preset("offline-quick").with_overrides({"precision": "fp32", "target.precision": "auto"})
    assert (p.source.precision, p.target.precision) == ("fp32", "auto")


def test_every_preset_loads():
    for name in preset_names():
        p = load_preset(name)
        assert p.source.dataset and p.target.dataset
    with pytest.raises(ValueError, match="^preset:"):
        load_preset("nope")


def test_corrupt_config_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text('{"model": "roberta-base", ')
    with pytest.raises(ValueError, match="^config: .* is not valid JSON"):
        load_config_file(bad)
    bad.write_text('{"model": "x", "epochz": 1}')
    with pytest.raises(ValueError, match="^epochz: not a RunConfig field"):
        load_config_file(bad)


@pytest.mark.parametrize("field, value, message", [
    ("run", " ", "run: name the run whose model is evaluated"),
    ("max_samples", 0, "max_samples: must be >= 1 (or empty for all), got 0"),
    ("windows", 40, "windows: must be between 1 and 32, got 40"),
    ("confidence", 0.3, "confidence: must be between 0.5 and 1.0, got 0.3"),
    ("truncation", "middle", "truncation: must be one of head, tail, head_tail, got 'middle'"),
    ("max_length", "many", "max_length: expected int, got 'many'"),
    ("scores", 1, "scores: not an EvalConfig field"),
])
def test_eval_config_round_trips_and_names_a_bad_field(field, value, message):
    from core.config import EvalConfig

    cfg = EvalConfig(run="r1", dataset="../shared/data/imdb", text_fields="text", max_samples="2000", windows="2")
    assert cfg.text_fields == ["text"] and cfg.max_samples == 2000 and cfg.reading == {"windows": 2}
    assert EvalConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError) as err:
        EvalConfig.from_dict({**cfg.to_dict(), field: value})
    assert str(err.value).startswith(message)


def test_every_field_has_help_and_a_new_field_reaches_help_and_the_form():
    """One schema: a field added to RunConfig (here to a subclass) shows in `--help`'s text and in the Train form
    with no other edit."""
    import dataclasses

    from streamlit.testing.v1 import AppTest

    from core.config import settings_help, setting

    assert all(f.metadata.get("help") for f in dataclasses.fields(RunConfig))
    extended = dataclasses.make_dataclass("Extended", [("label_smoothing", float, setting(
        0.0, label="Label smoothing", help="Soften the one-hot targets by this much."))], bases=(RunConfig,))
    text = settings_help(extended)
    assert "label_smoothing (default: 0.0)" in text and "Soften the one-hot targets" in text
    assert all(f"  {f.name} (default:" in text for f in dataclasses.fields(RunConfig))

    def form():
        import dataclasses

        import streamlit as st

        from core.config import GROUPS, RunConfig, setting
        from pages.common import setting_widgets

        extended = dataclasses.make_dataclass("Extended", [("label_smoothing", float, setting(
            0.0, label="Label smoothing", help="Soften the one-hot targets by this much."))], bases=(RunConfig,))
        values = {}
        for group in GROUPS:
            if group != "custom":
                values.update(setting_widgets(extended, extended(), group, {}))
        st.session_state["values"] = values

    at = AppTest.from_function(form, default_timeout=60).run()
    assert not at.exception
    assert at.number_input(key="train_label_smoothing").label == "Label smoothing"
    values = at.session_state["values"]
    assert values["label_smoothing"] == 0.0 and values["max_train_samples"] is None and values["precision"] == "auto"
    shown = {w.key for kind in (at.number_input, at.selectbox, at.checkbox, at.text_input) for w in kind}
    expected = {f"train_{f.name}" for f in dataclasses.fields(extended) if f.metadata.get("group") != "custom"}
    assert shown == expected  # every field once, the custom ones (model, data) left to the page's own widgets
