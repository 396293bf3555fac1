"""SupCon trains end to end under MirroredStrategy (two logical CPU devices), its first step
computes the single-device loss on the same global batch, and each replica augments differently."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.tensorflow_only


def test_mirrored_supcon_epoch_matches_single_device(tmp_path):
    worker = Path(__file__).with_name("mirrored_training_worker.py")
    result = subprocess.run([sys.executable, str(worker), str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    mirrored, single = report["mirrored"], report["default"]
    assert mirrored["replicas"] == 2 and single["replicas"] == 1
    assert mirrored["epochs"] == single["epochs"] == 1
    assert mirrored["restart_history_equal"]  # a finished mirrored run restarts from its checkpoints
    assert mirrored["first_step_loss"] == pytest.approx(single["first_step_loss"], rel=1e-5, abs=1e-5)
    assert 0.0 <= mirrored["test_accuracy"] <= 1.0
    # Every replica draws its own augmentation (the generator state is mirrored, so without care
    # image i of each replica would get the same crop, flip and colours).
    views = report["augment"]
    assert views["replicas"] == 2 and views["distinct_within_replica"] == 8
    assert not any(views["same_views"]), "the replicas drew the same views"
