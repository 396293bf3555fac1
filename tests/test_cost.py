"""supcon_lib.cost: multiply-adds counted from models, and the GPU time estimates built on them."""

import keras
import pytest
from keras import layers

from supcon_lib import cost, run_config


def test_count_macs_on_a_constructed_model():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same")(inputs)  # 8*8 pixels * 3*3 * 3 in * 4 out = 6,912
    x = layers.Conv2D(6, 1, strides=2)(x)  # 4*4 * 1 * 4 * 6 = 384
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(5)(x)  # 6 * 5 = 30
    inner = keras.Model(inputs, outputs)
    outer = keras.Sequential([keras.Input((8, 8, 3)), inner, layers.Dense(2)])  # nested: + 5 * 2
    assert cost.count_macs(inner) == 6_912 + 384 + 30
    assert cost.count_macs(outer) == 6_912 + 384 + 30 + 10


def _wide_resnet(depth, width):
    """A CIFAR Wide ResNet built from Keras layers (test reference for wide_resnet_macs)."""
    inputs = keras.Input((32, 32, 3))
    x = layers.Conv2D(16, 3, padding="same")(inputs)
    channels = 16
    for group, group_width in enumerate((16 * width, 32 * width, 64 * width)):
        for block in range((depth - 4) // 6):
            stride = 2 if (block == 0 and group > 0) else 1
            y = layers.Conv2D(group_width, 3, strides=stride, padding="same")(x)
            y = layers.Conv2D(group_width, 3, padding="same")(y)
            if channels != group_width or stride != 1:
                x = layers.Conv2D(group_width, 1, strides=stride)(x)
            x, channels = layers.Add()([x, y]), group_width
    return keras.Model(inputs, layers.Dense(10)(layers.GlobalAveragePooling2D()(x)))


@pytest.mark.parametrize("depth, width", [(10, 1), (16, 2)])
def test_wide_resnet_formula_matches_the_counted_network(depth, width):
    assert cost.wide_resnet_macs(depth, width) == cost.count_macs(_wide_resnet(depth, width))


def test_t4_reference_throughput():
    # WRN-28-10: 5.24 GMACs per image (the commonly quoted ~5.2 G); 282 images/s on the T4 run.
    assert cost.wide_resnet_macs(28, 10) == pytest.approx(5.24e9, rel=1e-3)
    assert cost.T4_EFFECTIVE_FLOPS == pytest.approx(282.3 * 3 * 2 * 5.2433e9, rel=1e-3)
    with pytest.raises(ValueError, match="6n \\+ 4"):
        cost.wide_resnet_macs(27, 10)


def test_encoder_counts():
    # ResNet-18 with the CIFAR stem: about 0.56 GMACs per 32x32 image (the commonly quoted figure).
    assert cost.encoder_macs("resnet18") == pytest.approx(0.556e9, rel=0.01)
    assert cost.encoder_macs("resnet_small") < cost.encoder_macs("resnet50v2") < cost.encoder_macs("resnet18")


def test_estimates_scale_with_the_work():
    config = run_config.RunConfig.from_profile("gpu", "ce")
    seconds = cost.estimate_run_seconds(config, macs=1e9)
    steps = 50 * 50_000 * 3  # epochs x images x three forward passes per training step
    # BN recalibration, then the training and test embeddings, each image with its mirror image
    assert config.flip_average
    evaluation = 10_000 + 2 * (50_000 + 10_000)
    assert seconds == pytest.approx((steps + evaluation) * 2e9 / cost.T4_EFFECTIVE_FLOPS)
    unflipped = run_config.RunConfig.from_profile("gpu", "ce", flip_average=False)
    assert cost.estimate_run_seconds(unflipped, macs=1e9) == pytest.approx(
        (steps + 10_000 + 50_000 + 10_000) * 2e9 / cost.T4_EFFECTIVE_FLOPS)
    # a momentum encoder: one view trained (three passes), the other encoded once
    queue = run_config.RunConfig.from_profile("gpu", "supcon", queue_size=4096)
    assert cost.estimate_run_seconds(queue, macs=1e9) == pytest.approx(
        (25 * 50_000 * 4 + evaluation) * 2e9 / cost.T4_EFFECTIVE_FLOPS)
    supcon = run_config.RunConfig.from_profile("gpu", "supcon")
    assert cost.estimate_run_seconds(supcon, macs=1e9) == pytest.approx(seconds)  # 25 epochs x 2 views
    assert cost.estimate_run_seconds(config, flops_per_second=cost.T4_EFFECTIVE_FLOPS / 2, macs=1e9) == \
        pytest.approx(2 * seconds)


def test_gpu_profile_fits_a_colab_session_with_room():
    # Notebooks 04 and 05 train; 06 reuses their runs. Estimated within 60 minutes on a T4 even
    # if the T4 runs our network 1.5x less efficiently than the reference (plus compilation).
    total = sum(cost.estimate_run_seconds(run_config.RunConfig.from_profile("gpu", method))
                for method in ("ce", "supcon"))
    assert 1.5 * total + 5 * 60 < 60 * 60
    full = sum(cost.estimate_run_seconds(run_config.RunConfig.from_profile("full", method))
               for method in ("ce", "supcon"))
    assert full > 4 * 3600  # the paper-scale profile is for readers with hours


def test_notebook_headers_quote_the_estimates():
    import re
    from pathlib import Path

    import jupytext

    notebooks = Path(__file__).resolve().parent.parent / "notebooks"
    for stem, method in (("04_cross_entropy_baseline", "ce"), ("05_supcon_two_phase", "supcon")):
        header = " ".join(jupytext.read(notebooks / f"{stem}.py").cells[0].source.split())
        gpu = cost.estimate_run_seconds(run_config.RunConfig.from_profile("gpu", method)) / 60
        full = cost.estimate_run_seconds(run_config.RunConfig.from_profile("full", method)) / 60
        quoted_gpu = re.search(r"`gpu`.*? about (\d+) minutes on a Colab T4", header)
        quoted_full = re.search(r"`full` \(\d+ epochs\) about (\d+) (minutes|hours) on a T4", header)
        assert quoted_gpu and int(quoted_gpu.group(1)) == round(gpu), stem
        assert quoted_full, stem
        unit = 60 if quoted_full.group(2) == "hours" else 1
        assert int(quoted_full.group(1)) == round(full / unit), stem
        assert "*estimates*" in header


def test_readme_quotes_the_estimates():
    import re
    from pathlib import Path

    readme = " ".join((Path(__file__).resolve().parent.parent / "README.md").read_text().split())
    minutes = {(profile, method): cost.estimate_run_seconds(run_config.RunConfig.from_profile(profile, method)) / 60
               for profile in ("gpu", "full") for method in run_config.METHODS}
    gpu = re.search(r"\| `gpu` \|.*?about (\d+) \+ (\d+) minutes of training on a Colab T4", readme)
    assert gpu and (int(gpu.group(1)), int(gpu.group(2))) == (round(minutes["gpu", "ce"]), round(minutes["gpu", "supcon"]))
    full = re.search(r"\| `full` \|.*?about (\d+) minutes \(CE\) and (\d+) hours \(SupCon\) on a T4", readme)
    assert full and (int(full.group(1)), int(full.group(2))) == (round(minutes["full", "ce"]),
                                                                 round(minutes["full", "supcon"] / 60))
    assert f"{cost.encoder_macs('resnet18') / 1e9:.3f} G per 32x32 image" in readme
    assert f"{cost.T4_EFFECTIVE_FLOPS / 1e12:.1f} TFLOP/s" in readme
    assert f"{cost.wide_resnet_macs(28, 10) / 1e9:.2f} G multiply-adds" in readme
