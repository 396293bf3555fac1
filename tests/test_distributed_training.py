"""SupCon trains end to end under MirroredStrategy (two logical CPU devices), after a
cross-entropy run in the same process, its first step computes the single-device loss on the same
global batch, and each replica augments differently."""

import pytest

import distributed_workers

pytestmark = pytest.mark.tensorflow_only


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """tests/mirrored_training_worker.py's report, from the fresh process that
    tests/distributed_workers.py starts once per session for this module and test_losses_distributed.py
    (it asserts the process's exit status 0 and that this part raised nothing)."""
    return distributed_workers.report(tmp_path_factory, "mirrored_training")


def test_recipes_train_one_after_another_under_one_strategy(report):
    # Cross-entropy, then SupCon, in one process on two replicas (a second MirroredStrategy used
    # to make SupCon's first step fail: "Collective instance ... expected type 0 ...").
    assert report["ce_first"] == {"replicas": 2, "epochs": 1, "loss_finite": True}
    assert report["mirrored"]["replicas"] == 2 and report["mirrored"]["epochs"] == 1


def test_mirrored_supcon_epoch_matches_single_device(report):
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
