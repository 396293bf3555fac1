"""supcon_lib.runtime: the profile a notebook picks, and where its runs are kept."""

import sys
import types

import pytest

from supcon_lib import paths, run_config, runtime


def test_profile_choice(monkeypatch):
    monkeypatch.delenv("SUPCON_PROFILE", raising=False)
    for device, expected in (("gpu", "gpu"), ("tpu", "gpu"), ("cpu", "smoke")):
        monkeypatch.setattr(runtime, "accelerator", lambda d=device: d)
        assert runtime.choose_profile() == expected
    assert runtime.choose_profile(default="cpu") == "cpu"
    monkeypatch.setenv("SUPCON_PROFILE", "full")
    assert runtime.choose_profile() == "full"
    monkeypatch.setenv("SUPCON_PROFILE", "huge")
    with pytest.raises(ValueError, match="SUPCON_PROFILE"):
        runtime.choose_profile()
    assert set(runtime.PROFILE_DESCRIPTIONS) == set(run_config.PROFILES)  # every profile, described once


def test_runs_stay_local_outside_colab(monkeypatch, tmp_path, capsys):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setenv("SUPCON_RUNS_DIR", str(tmp_path / "runs"))
    assert runtime.keep_runs_on_drive() == tmp_path / "runs"
    assert "not in Colab" in capsys.readouterr().out


def test_runs_on_drive_in_colab(monkeypatch, tmp_path):
    mounted = []
    drive = types.SimpleNamespace(mount=mounted.append)
    colab = types.ModuleType("google.colab")
    colab.drive = drive
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(runtime, "DRIVE_MOUNT_POINT", str(tmp_path / "drive"))  # no /content here
    monkeypatch.setenv("SUPCON_RUNS_DIR", str(tmp_path / "local"))
    folder = runtime.keep_runs_on_drive()
    assert mounted == [str(tmp_path / "drive")]
    assert folder == tmp_path / "drive" / "MyDrive" / "supcon" / "runs" == paths.runs_dir()
