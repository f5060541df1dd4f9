"""Config registry: YAML round trip, unknown keys and wrong types are errors naming their path."""

import pytest

from rtperformer.config import Config, ConfigError, from_dict, load_config


def test_round_trip_through_dict():
    cfg = from_dict({"name": "x", "model": {"channels": [8, 16], "lookahead_frames": 1}})
    assert cfg.model.channels == (8, 16)
    assert from_dict(cfg.to_dict()) == cfg


def test_unknown_key_names_its_path():
    with pytest.raises(ConfigError, match=r"model\.chanels"):
        from_dict({"model": {"chanels": [8]}})
    with pytest.raises(ConfigError, match="'bogus'"):
        from_dict({"bogus": 1})


def test_wrong_types_are_rejected():
    with pytest.raises(ConfigError, match="audio.hop"):
        from_dict({"audio": {"hop": "256"}})
    with pytest.raises(ConfigError, match="model.velocity"):
        from_dict({"model": {"velocity": 1}})
    with pytest.raises(ConfigError, match="serve.channel_map"):
        from_dict({"serve": {"channel_map": [1, 2]}})


def test_channel_map_keys_are_ints():
    cfg = from_dict({"serve": {"channel_map": {0: "violin", 1: "cello"}}})
    assert cfg.serve.channel_map == {0: "violin", 1: "cello"}


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_shipped_configs_load():
    from rtperformer.config import CONFIG_DIR

    files = sorted(p for p in CONFIG_DIR.glob("*.yaml"))
    for path in files:
        assert isinstance(load_config(path), Config)


def test_unknown_key_error_is_one_line(tmp_path):
    bad = tmp_path / "typo.yaml"
    bad.write_text("render:\n  phaze: gla\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert "render.phaze" in str(info.value)
    assert len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize("data,match", [
    ({"serve": {"event_queue": 0}}, "serve.event_queue' must be >= 16"),
    ({"audio": {"hop": 0}}, "audio.hop' must be >= 1"),
    ({"audio": {"hop": 2048}}, "must not exceed audio.n_fft"),
    ({"render": {"release_seconds": float("inf")}}, "render.release_seconds' must be a finite number"),
    ({"render": {"release_seconds": float("nan")}}, "must be a finite number"),
    ({"render": {"release_seconds": -1.0}}, "must be >= 0"),
    ({"serve": {"channel_map": {1: "celo"}}}, "maps channel 1 to 'celo', which is not an instrument"),
    ({"serve": {"channel_map": {16: "cello"}}}, "channel 16"),
    ({"serve": {"default_instrument": "vilin"}}, "'vilin' is not an instrument"),
    ({"render": {"mode": "stream"}}, "render.mode' must be one of"),
    ({"serve": {"step_frames": 0}}, "serve.step_frames' must be >= 1"),
])
def test_out_of_range_values_are_one_line_errors(data, match):
    with pytest.raises(ConfigError, match=match) as e:
        from_dict(data)
    assert "\n" not in str(e.value)


def test_bad_value_in_a_config_file_is_exit_2_at_load(tmp_path):
    """Through the command line: `serve --config bad.yaml` fails with one line and exit 2 before anything
    else happens (on main these values were accepted and failed later, or never)."""
    import subprocess
    import sys
    from pathlib import Path

    bad = tmp_path / "bad.yaml"
    bad.write_text("serve:\n  event_queue: 0\n")
    r = subprocess.run([sys.executable, "-m", "rtperformer", "serve", "--config", str(bad)],
                       cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr
    assert "serve.event_queue" in r.stderr
