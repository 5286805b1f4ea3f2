"""Style transfer: losses on hand-built maps, the VGG16 copy against the package's ONNX model,
Gatys lowering the loss, the fast network's shapes and training, and the stylize command's errors."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from components.config import load_params
from components.style.fast import TransformNet, train_fast
from components.style.features import RandomFeatures, load_features, load_vgg16, vgg16_onnx_bytes
from components.style.io import load_fast, save_fast, to_tensor
from components.style.losses import content_loss, gram, mean_std_distance, style_loss, total_variation
from components.style.perceptual import PerceptualLoss
from components.style.styles import STYLES, make_style
from components.stylize import main as stylize_main


def test_gram_of_a_hand_built_map():
    # two channels over 2x2 pixels: F1 = [1, 2, 3, 4], F2 = [0, 1, 0, 1]
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])
    g = gram(f)  # sum_k F_ik F_jk / (C H W), C H W = 8
    assert torch.allclose(g, torch.tensor([[[30.0, 6.0], [6.0, 2.0]]]) / 8)


def test_content_style_and_tv_losses_on_hand_built_maps():
    a = torch.zeros(1, 2, 2, 2)
    b = torch.ones(1, 2, 2, 2)
    assert content_loss(a, b).item() == pytest.approx(1.0)
    assert content_loss(b, b).item() == 0.0
    # gram(ones) = 4/8 everywhere; against gram(zeros) = 0: ||.||_F^2 = 4 entries * 0.25 = 1, times w
    loss = style_loss({"x": a, "y": b}, {"x": gram(a), "y": gram(a)}, {"x": 5.0, "y": 3.0})
    assert loss.item() == pytest.approx(3.0)
    stripes = torch.tensor([[[[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]]])
    assert total_variation(stripes).item() == pytest.approx(1.0)  # dx^2 mean 1, dy 0
    assert total_variation(b).item() == 0.0
    assert mean_std_distance(b, b).item() == 0.0


def test_vgg16_torch_copy_matches_the_packages_onnx_model():
    import onnx
    import onnxruntime as ort
    model = onnx.load_from_string(vgg16_onnx_bytes())
    node = "functional_1/block3_conv3_1/Relu:0"  # an intermediate output of the package's graph
    model.graph.output.append(onnx.helper.make_tensor_value_info(node, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    vgg = load_vgg16("max")
    x = torch.rand(1, 3, 240, 240, generator=torch.Generator().manual_seed(0))
    ref = session.run([node], {"input": vgg.preprocess(x).permute(0, 2, 3, 1).numpy()})[0]
    ours = vgg(x, ["relu3_3"])["relu3_3"].numpy()
    assert ours.shape == ref.shape == (1, 256, 60, 60)
    assert np.abs(ours - ref).max() <= 1e-5 * np.abs(ref).max()


def test_every_feature_network_loads_offline_and_names_its_layers():
    x = torch.rand(1, 3, 64, 64)
    for name in ("vgg16", "efficientnet_lite0", "random"):
        net = load_features(name, "avg")
        out = net(x, [net.LAYERS[0], net.LAYERS[-1]])
        assert set(out) == {net.LAYERS[0], net.LAYERS[-1]}
    with pytest.raises(ValueError, match="unknown layer"):
        RandomFeatures()(x, ["relu1_1"])


def _small_loss(style):
    net = RandomFeatures(0)._finish()
    return PerceptualLoss(net, style, "k3", {"k3": 1.0, "k5": 1.0}, 1.0, 10.0, 1.0)


def test_a_few_gatys_steps_lower_the_total_loss():
    from components.style.gatys import stylize
    style = to_tensor(make_style("mosaic", 0, 64))
    content = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    loss = _small_loss(style)
    _, before = loss(content, loss.content_target(content))
    for optimizer in ("lbfgs", "adam"):
        image, after = stylize(content, loss, steps=5, optimizer=optimizer)
        assert after["loss"] < before["loss"] and after["steps"] == 5
        assert image.shape == content.shape and 0.0 <= image.min() and image.max() <= 1.0


def test_fast_network_keeps_the_shape_trains_and_round_trips(tmp_path):
    net = TransformNet(width=4, residual_blocks=1)
    assert net(torch.rand(1, 3, 30, 42)).shape == (1, 3, 30, 42)  # any size (padded to a multiple of 4)
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    history = train_fast(net, images, _small_loss(to_tensor(make_style("woodcut", 0, 32))), epochs=3,
                         batch_size=2, lr=1e-2, seed=0, crop=24)
    assert history[-1]["loss"] < history[0]["loss"]
    save_fast(net, tmp_path / "net.pt", {"style": "woodcut"})
    again, meta = load_fast(tmp_path / "net.pt")
    assert meta == {"style": "woodcut"}
    with torch.no_grad():
        assert torch.equal(again(images[:1]), net.eval()(images[:1]))
    old = torch.load(tmp_path / "net.pt", weights_only=True)
    del old["format"]  # what the first version saved: its forward differs, so its weights mean nothing here
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="old.pt is not a cs230-style-net/2 checkpoint"):
        load_fast(tmp_path / "old.pt")


def test_bf16_training_keeps_fp32_weights_and_losses():
    """Under train.precision bf16 only the networks run in bf16: the loss is fp32 and near its fp32 value."""
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    loss, net = _small_loss(to_tensor(make_style("swirl", 0, 32))), TransformNet(width=4, residual_blocks=1)
    with torch.no_grad():
        exact, _ = loss(net(images), loss.content_target(images))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast, _ = loss(net(images), loss.content_target(images))
    assert fast.dtype == torch.float32 and abs(fast.item() - exact.item()) < 0.02 * exact.item()
    train_fast(net, images, loss, epochs=3, batch_size=2, lr=3e-3, seed=0, crop=32, bf16=True)
    with torch.no_grad():
        trained, _ = loss(net(images), loss.content_target(images))
    assert trained.item() < 0.5 * exact.item()  # seeds 0-5 all reach about 0.1x
    assert all(p.dtype == torch.float32 for p in net.parameters())


def test_training_crops_are_seeded_windows_of_the_full_images():
    """Each batch is one seeded crop of full-size images (the scale the style target was taken at)."""
    seen = []

    class Recorder:
        def content_target(self, batch):
            seen.append(batch.clone())
            return batch

        def __call__(self, generated, target):
            value = (generated - target).pow(2).mean()
            return value, {"loss": value.item()}

    images = torch.rand(4, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        train_fast(TransformNet(width=2, residual_blocks=0), images, Recorder(), epochs=2, batch_size=2,
                   lr=1e-3, seed=3, crop=16)
    first, second = seen[:4], seen[4:]
    assert all(torch.equal(a, b) for a, b in zip(first, second))  # seeded
    assert all(b.shape == (2, 3, 16, 16) for b in first)
    windows = [next((i, y, x) for i in range(4) for y in range(25) for x in range(25)
                    if torch.equal(images[i, :, y:y + 16, x:x + 16], b[0])) for b in first]
    assert len({(y, x) for _, y, x in windows}) > 1  # the window moves between batches


def test_procedural_styles_are_deterministic_and_not_blank():
    for name in STYLES:
        a, b = make_style(name, 3, 48), make_style(name, 3, 48)
        assert a.shape == (48, 48, 3) and np.array_equal(a, b) and a.std() > 20
    assert not np.array_equal(make_style("swirl", 3, 48), make_style("swirl", 4, 48))


def test_stylize_command_writes_a_png_and_a_json_line(tmp_path, capsys):
    Image.fromarray(make_style("mosaic", 0, 40)).save(tmp_path / "c.png")
    Image.fromarray(make_style("swirl", 0, 40)).save(tmp_path / "s.png")
    (tmp_path / "bad.png").write_text("not an image")
    assert stylize_main([str(tmp_path / "c.png"), str(tmp_path / "s.png"), "-o", str(tmp_path / "o.png"),
                         "--size", "32", "--steps", "2"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["steps"] == 2 and {"content_loss", "style_loss", "seconds"} <= set(record)
    assert Image.open(tmp_path / "o.png").size == (32, 32)
    max_size = load_params().style_transfer.max_size
    for argv, message in ([["bad.png", "s.png"], "bad.png: not a readable image"],
                          [["c.png", "missing.png"], "missing.png: no such image file"],
                          [["c.png", "s.png", "--size", str(max_size + 1)], "over style_transfer.max_size"],
                          [["c.png"], "a STYLE image is needed"],
                          [["c.png", "--model", "s.png"], "s.png is not a cs230-style-net/2 checkpoint"]):
        paths = [str(tmp_path / a) if a.endswith(".png") else a for a in argv]
        assert stylize_main(paths + ["-o", str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
