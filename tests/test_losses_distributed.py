"""supcon_lib.losses under tf.distribute.MirroredStrategy over two logical CPU devices.

The logical devices must be configured before TensorFlow initialises its devices, which the
test process has long done, so the checks (tests/losses_distributed_worker.py) run in a fresh
interpreter, started once per session by tests/distributed_workers.py for this module and
test_distributed_training.py; it reports the measurements as JSON and these tests judge them.

Convention under test: each replica returns (sum of its LOCAL anchors' terms) / (GLOBAL number
of anchors with a positive), contrasting against the all-gathered global batch. Hence
* the sum of the per-replica losses equals the single-device loss of the global batch;
* the per-replica gradients w.r.t. each replica's embeddings, concatenated, equal the
  single-device gradient; the summed gradients w.r.t. a shared variable equal it too;
* Keras' compiled fit (which sums replica gradients) reports the global loss and takes
  exactly the single-device SGD step.
"""

from __future__ import annotations

import pytest

import distributed_workers

TOLERANCE = 1e-5

RAW_CASES = [
    "out_v2",
    "in_v3_uneven",
    "simclr_v2_uneven",
    "in_rank2_singletons_uneven",
    "out_v1_no_positive",
    "npairs_uneven",
]
FIT_CASES = ["out_v1_singletons"]


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory) -> dict:
    # Asserts the worker process's exit status 0 and that this part raised nothing.
    return distributed_workers.report(tmp_path_factory, "losses")


def test_worker_ran_two_replicas_and_every_case(distributed_results):
    assert distributed_results["num_replicas"] == 2
    assert sorted(distributed_results["raw"]) == sorted(RAW_CASES)
    assert sorted(distributed_results["fit"]) == sorted(FIT_CASES)


@pytest.mark.parametrize("case", RAW_CASES)
def test_sum_of_replica_losses_equals_global_loss(distributed_results, case):
    result = distributed_results["raw"][case]
    assert len(result["replica_losses"]) == 2
    assert result["loss_diff"] <= TOLERANCE, result
    if case == "out_v1_no_positive":
        assert result["single_loss"] == 0.0 and result["replica_losses"] == [0.0, 0.0]
    else:
        # Each replica returns a share, not the whole (a mean-convention bug would double it).
        assert result["single_loss"] > 0.5
        assert all(0 < value < result["single_loss"] for value in result["replica_losses"])


@pytest.mark.parametrize("case", RAW_CASES)
def test_replica_gradients_equal_single_device_gradients(distributed_results, case):
    result = distributed_results["raw"][case]
    assert result["embedding_grad_diff"] <= TOLERANCE, result
    assert result["projection_grad_diff"] <= TOLERANCE, result
    if case == "out_v1_no_positive":
        assert result["single_grad_norm"] == 0.0
    else:
        assert result["single_grad_norm"] > 1e-2  # The comparison is not between zeros.


@pytest.mark.parametrize("case", FIT_CASES)
def test_compiled_fit_matches_single_device_step(distributed_results, case):
    result = distributed_results["fit"][case]
    assert result["fit_loss_diff"] <= TOLERANCE, result
    assert result["weights_diff"] <= TOLERANCE, result
    assert result["weights_change"] > 1e-2  # The step really moved the weights.
