"""Tests of the `official` variant: the authors' released architecture, loaded from a random state built from the JSON.

Frames are tiny (8x8 to 17x25) because the paper-scale nets have ~30 M parameters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from estinet.models.official import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    OfficialCoarseNet,
    OfficialESTINet,
    OfficialFineNet,
    official_state_dict_shapes,
    official_windows,
    random_official_state,
)

_REFERENCE_JSON = Path(__file__).resolve().parents[3] / "shared" / "reference" / "official_estinet_state_dict.json"
_UNUSED_BN = re.compile(r"(^E\.bn1|\.bn1|\.bn2|^D\.bn|\.bn1_2|^MFF\.bn|\.bn0)\.")


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """Run single-threaded: on a loaded shared CPU, intra-op threads of these tiny convs mostly wait on each other."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def states() -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    return random_official_state(0)


@pytest.fixture(scope="module")
def model(states: tuple[dict[str, Tensor], dict[str, Tensor]]) -> OfficialESTINet:
    net = OfficialESTINet().eval()
    net.load_official(*states)
    return net


def _clip(h: int, w: int, batch: int = 1, seed: int = 1) -> Tensor:
    """Normalized-looking cube (B, 3, 5, H, W)."""
    return torch.randn(batch, 3, 5, h, w, generator=torch.Generator().manual_seed(seed))


def _coarse_with(model: OfficialESTINet, changes: dict[str, Tensor], x: Tensor) -> Tensor:
    state = {**dict(model.coarse.state_dict()), **changes}
    with torch.no_grad():
        return functional_call(model.coarse, state, (x,))


def _fine_with(model: OfficialESTINet, changes: dict[str, Tensor], c_out: Tensor, c_in: Tensor) -> Tensor:
    state = {**dict(model.fine.state_dict()), **changes}
    with torch.no_grad():
        return functional_call(model.fine, state, (c_out, c_in))


# ---------------------------------------------------------------------------------------------------------------
# Keys, shapes, loading
# ---------------------------------------------------------------------------------------------------------------


def test_state_dict_keys_and_shapes_equal_json() -> None:
    shapes = official_state_dict_shapes()
    for net, name in ((OfficialCoarseNet(), "coarse"), (OfficialFineNet(), "fine")):
        got = {key: tuple(value.shape) for key, value in net.state_dict().items()}
        assert got == shapes[name]
    assert len(shapes["coarse"]) == 344 and len(shapes["fine"]) == 280
    assert shapes["fine"]["net.4.weight"] == (15, 64, 3, 3)
    assert shapes["coarse"]["E.layer2.0.downsample.1.num_batches_tracked"] == ()


@pytest.mark.skipif(not _REFERENCE_JSON.is_file(), reason="shared/ reference files are not beside the clone")
def test_packaged_json_equals_reference() -> None:
    raw = json.loads(_REFERENCE_JSON.read_text(encoding="utf-8"))
    reference = {net: {key: tuple(shape) for key, shape in raw[net].items()} for net in ("coarse", "fine")}
    assert official_state_dict_shapes() == reference


def test_random_state_is_seeded_and_valid(states: tuple[dict[str, Tensor], dict[str, Tensor]]) -> None:
    coarse, fine = states
    shapes = official_state_dict_shapes()
    assert {k: tuple(v.shape) for k, v in coarse.items()} == shapes["coarse"]
    assert {k: tuple(v.shape) for k, v in fine.items()} == shapes["fine"]
    again, _ = random_official_state(0)
    assert torch.equal(again["E.conv1.weight"], coarse["E.conv1.weight"])
    assert not torch.equal(coarse["D.up1.conv1.weight"][0], coarse["D.up1.conv1.weight"][1])
    for key, value in coarse.items():
        if key.endswith("running_var"):
            assert bool((value > 0).all()), key
        if key.endswith("num_batches_tracked"):
            assert value.dtype == torch.int64 and value.dim() == 0, key
        else:
            assert value.dtype == torch.float32, key


@pytest.mark.parametrize("prefix", ["", "module."])
def test_load_official_strict_with_and_without_prefix(
    states: tuple[dict[str, Tensor], dict[str, Tensor]], prefix: str
) -> None:
    coarse, fine = states
    net = OfficialESTINet()
    net.load_official({prefix + k: v for k, v in coarse.items()}, {prefix + k: v for k, v in fine.items()})
    loaded = net.coarse.state_dict()
    for key in ("E.conv1.weight", "E.bn1.running_var", "R_bwd.Q_t.0.bias", "E.layer4.0.downsample.1.running_mean"):
        assert torch.equal(loaded[key], coarse[key])
    assert torch.equal(net.fine.state_dict()["net.1.sub1.8.RDB3.conv5.0.bias"], fine["net.1.sub1.8.RDB3.conv5.0.bias"])
    assert int(loaded["E.bn1.num_batches_tracked"]) == int(coarse["E.bn1.num_batches_tracked"])


def test_load_official_refuses_wrong_shape(
    model: OfficialESTINet, states: tuple[dict[str, Tensor], dict[str, Tensor]]
) -> None:
    coarse, fine = states
    bad = dict(coarse)
    bad["bidirection_fusion.weight"] = torch.zeros(3, 8, 5, 5)
    with pytest.raises(ValueError, match=r"bidirection_fusion\.weight: got \(3, 8, 5, 5\), expected \(3, 6, 5, 5\)"):
        model.load_official(bad, fine)
    assert torch.equal(model.coarse.state_dict()["bidirection_fusion.weight"], coarse["bidirection_fusion.weight"])


def test_load_official_refuses_foreign_state(
    model: OfficialESTINet, states: tuple[dict[str, Tensor], dict[str, Tensor]]
) -> None:
    coarse, fine = states
    with pytest.raises(ValueError, match="net_C") as info:  # nets swapped
        model.load_official(fine, coarse)
    message = str(info.value)
    assert "344 missing" in message and "280 unexpected" in message and "+339 more" in message
    missing_one = {k: v for k, v in fine.items() if k != "net.2.bias"}
    with pytest.raises(ValueError, match=r"net_F.*") as info:
        model.load_official(coarse, {**missing_one, "head.weight": torch.zeros(1)})
    assert "1 missing key(s): net.2.bias" in str(info.value) and "1 unexpected key(s): head.weight" in str(info.value)
    with pytest.raises(TypeError, match="'state_dict' entry"):
        model.load_official({"state_dict": coarse, "epoch": 3}, fine)  # type: ignore[dict-item]


# ---------------------------------------------------------------------------------------------------------------
# Shapes and input validation
# ---------------------------------------------------------------------------------------------------------------


def test_forward_shapes_and_range_odd_size(model: OfficialESTINet) -> None:
    frames = torch.rand(1, 5, 3, 17, 25, generator=torch.Generator().manual_seed(2))  # odd H and odd W
    with torch.no_grad():
        coarse, refined = model(frames)
    assert coarse.shape == (1, 5, 3, 17, 25) and refined.shape == (1, 3, 17, 25)
    for out in (coarse, refined):
        assert bool(torch.isfinite(out).all()) and out.min() >= 0.0 and out.max() <= 1.0
    assert 0.0 < float(refined.std()) < 1.0  # not saturated to a constant


def test_forward_layout_and_clamp_match_normalized_path(model: OfficialESTINet) -> None:
    h, w = 8, 8  # even size
    frames = torch.rand(1, 5, 3, h, w, generator=torch.Generator().manual_seed(3))
    x_cube = torch.empty(1, 3, 5, h, w)
    for t in range(5):
        for c in range(3):
            x_cube[:, c, t] = (frames[:, t, c] - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
    with torch.no_grad():
        coarse, refined = model(frames)
        out_c, out_f = model.forward_normalized(x_cube)
    assert coarse.shape == (1, 5, 3, h, w) and refined.shape == (1, 3, h, w)
    assert out_c.shape == out_f.shape == (1, 3, 5, h, w)
    assert bool(torch.isfinite(out_c).all()) and bool(torch.isfinite(out_f).all())
    for c in range(3):
        lo = (0.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        hi = (1.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        expected_refined = out_f[:, c, 2].clamp(lo, hi) * IMAGENET_STD[c] + IMAGENET_MEAN[c]
        torch.testing.assert_close(refined[:, c], expected_refined, atol=1e-5, rtol=0)
        for t in range(5):
            expected = out_c[:, c, t].clamp(lo, hi) * IMAGENET_STD[c] + IMAGENET_MEAN[c]
            torch.testing.assert_close(coarse[:, t, c], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(5, 3, 8, 8), (1, 4, 3, 8, 8), (1, 5, 4, 8, 8), (1, 3, 5, 8, 8)])
def test_forward_rejects_bad_input(model: OfficialESTINet, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(B, T=5, 3, H, W\)"):
        model(torch.zeros(shape))


def test_forward_rejects_integer_frames(model: OfficialESTINet) -> None:
    with pytest.raises(ValueError, match=r"float tensor in \[0, 1\], got dtype torch\.uint8"):
        model(torch.zeros(1, 5, 3, 8, 8, dtype=torch.uint8))


def test_fine_rejects_wrong_frame_count(model: OfficialESTINet) -> None:
    with pytest.raises(ValueError, match="D=5"):
        model.fine(torch.zeros(1, 3, 4, 8, 8), torch.zeros(1, 3, 4, 8, 8))


# ---------------------------------------------------------------------------------------------------------------
# Semantics of the coarse net
# ---------------------------------------------------------------------------------------------------------------


def test_unused_bn_is_skipped_and_downsample_bn_uses_running_stats(model: OfficialESTINet) -> None:
    x = _clip(8, 8)
    base = _coarse_with(model, {}, x)
    state = model.coarse.state_dict()
    unused = {}
    for name in ("E.bn1", "E.layer1.0.bn1", "E.layer3.1.bn2", "D.bn", "D.up2.bn1_2", "MFF.bn", "MFF.up4.bn2"):
        unused[f"{name}.weight"] = state[f"{name}.weight"] * 3.0
        unused[f"{name}.running_mean"] = state[f"{name}.running_mean"] + 5.0
    unused["R_bwd.Refine.bn0.bias"] = state["R_bwd.Refine.bn0.bias"] + 2.0
    model.coarse.train()  # frozen BN: training mode computes the same function
    try:
        assert torch.equal(_coarse_with(model, unused, x), base)
    finally:
        model.coarse.eval()
    key = "E.layer2.0.downsample.1.running_mean"
    shifted = _coarse_with(model, {key: state[key] + 1.0}, x)
    assert (shifted - base).abs().max() > 1e-3


def test_gradients_reach_exactly_the_used_parameters(model: OfficialESTINet) -> None:
    x = _clip(8, 8)
    try:
        model.coarse(x).square().mean().backward()
        for name, param in model.coarse.named_parameters():
            if _UNUSED_BN.search(name) and ".downsample." not in name:
                assert param.grad is None, name
            else:
                assert param.grad is not None and param.grad.abs().sum() > 0, name
        model.fine(x, x.flip(2)).square().mean().backward()
        for name, param in model.fine.named_parameters():
            assert param.grad is not None and param.grad.abs().sum() > 0, name
    finally:
        model.zero_grad(set_to_none=True)


def test_input_residue(model: OfficialESTINet) -> None:
    x = _clip(8, 8)
    zero = {"bidirection_fusion.weight": torch.zeros(3, 6, 5, 5), "bidirection_fusion.bias": torch.zeros(3)}
    assert torch.equal(_coarse_with(model, zero, x), x)


def test_forward_refiner_is_causal_and_backward_refiner_anticausal(model: OfficialESTINet) -> None:
    x = _clip(8, 8)
    weight = model.coarse.state_dict()["bidirection_fusion.weight"]
    fwd_only = {"bidirection_fusion.weight": torch.cat([weight[:, :3], torch.zeros_like(weight[:, 3:])], dim=1)}
    bwd_only = {"bidirection_fusion.weight": torch.cat([torch.zeros_like(weight[:, :3]), weight[:, 3:]], dim=1)}
    moved = x.clone()
    moved[:, :, 2] += 1.0  # change the middle frame only
    fwd = (_coarse_with(model, fwd_only, moved) - _coarse_with(model, fwd_only, x)).abs().amax(dim=(0, 1, 3, 4))
    bwd = (_coarse_with(model, bwd_only, moved) - _coarse_with(model, bwd_only, x)).abs().amax(dim=(0, 1, 3, 4))
    assert fwd[:2].max() < 1e-5 and fwd[3:].min() > 1e-4  # forward in time: only frames 2, 3, 4 respond
    assert bwd[3:].max() < 1e-5 and bwd[:2].min() > 1e-4  # backward in time: only frames 0, 1, 2 respond


def test_batch_elements_are_independent(model: OfficialESTINet) -> None:
    x = _clip(8, 8, batch=2)
    both = _coarse_with(model, {}, x)
    torch.testing.assert_close(both[1:], _coarse_with(model, {}, x[1:]), atol=1e-5, rtol=1e-5)
    assert (both[0] - both[1]).abs().max() > 1e-3


def test_odd_width_decodes_one_extra_column(model: OfficialESTINet) -> None:
    maps = _clip(8, 9)[:, :, :2].permute(0, 2, 1, 3, 4).reshape(2, 3, 8, 9)  # (B*D, 3, H, W)
    with torch.no_grad():
        x_decoder, x_mff = model.coarse.features(maps)
    assert x_decoder.shape == (2, 16, 8, 10) and x_mff.shape == (2, 64, 8, 10)


def test_odd_height_pads_a_replicated_bottom_row(model: OfficialESTINet) -> None:
    x = _clip(7, 8)
    padded = torch.cat([x, x[..., -1:, :]], dim=3)  # (B, 3, 5, 8, 8)
    out = _coarse_with(model, {}, x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, _coarse_with(model, {}, padded)[..., :7, :], atol=1e-6, rtol=0)
    zeros = torch.zeros_like(padded)
    zeros[..., :7, :] = x  # a zero bottom row instead of a replicated one gives a different result
    assert (out - _coarse_with(model, {}, zeros)[..., :7, :]).abs().max() > 1e-4


def test_up_projection_matches_description(model: OfficialESTINet) -> None:
    up = model.coarse.MFF.up2  # 128 -> 16
    x = torch.randn(2, 128, 2, 3, generator=torch.Generator().manual_seed(4))
    size = (7, 9)
    resized = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    a = F.relu(F.conv2d(resized, up.conv1.weight, padding=2))
    expected = F.relu(F.conv2d(a, up.conv1_2.weight, padding=1) + F.conv2d(resized, up.conv2.weight, padding=2))
    with torch.no_grad():
        torch.testing.assert_close(up(x, size), expected, atol=1e-5, rtol=1e-5)


def test_recurrent_refiner_matches_description(model: OfficialESTINet) -> None:
    r = model.coarse.R_fwd
    feat = torch.randn(1, 80, 2, 4, 5, generator=torch.Generator().manual_seed(5))
    h = torch.zeros(1, 8, 4, 5)
    c = torch.zeros(1, 8, 4, 5)
    outs = []
    for t in range(2):
        z = torch.cat([feat[:, :, t], h], dim=1)
        gate = {
            name: F.conv2d(z, getattr(r, name)[0].weight, getattr(r, name)[0].bias, padding=1)
            for name in ("F_t", "I_t", "C_t", "Q_t")
        }
        c = torch.sigmoid(gate["F_t"]) * c + torch.sigmoid(gate["I_t"]) * torch.tanh(gate["C_t"])
        rr = torch.cat([c, torch.sigmoid(gate["Q_t"])], dim=1)
        x1 = F.relu(F.conv2d(F.relu(F.conv2d(rr, r.Refine.conv0.weight, padding=2)), r.Refine.conv1.weight, padding=2))
        h = F.conv2d(x1, r.Refine.convh.weight, r.Refine.convh.bias, padding=1)
        outs.append(F.conv2d(x1, r.Refine.conv2.weight, r.Refine.conv2.bias, padding=2))
    with torch.no_grad():
        torch.testing.assert_close(r(feat), torch.stack(outs, dim=2), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Semantics of the fine net
# ---------------------------------------------------------------------------------------------------------------


def test_fine_residual_and_channel_order(model: OfficialESTINet) -> None:
    c_out, c_in = _clip(8, 8, seed=6), _clip(8, 8, seed=7)
    zero = {"net.4.weight": torch.zeros(15, 64, 3, 3), "net.4.bias": torch.zeros(15)}
    assert torch.equal(_fine_with(model, zero, c_out, c_in), c_out)
    bias = torch.arange(15, dtype=torch.float32)
    delta = _fine_with(model, {**zero, "net.4.bias": bias}, c_out, c_in) - c_out
    for colour in range(3):
        for frame in range(5):
            torch.testing.assert_close(delta[:, colour, frame], torch.full((1, 8, 8), float(colour * 5 + frame)))


def test_c3d_block_matches_description(model: OfficialESTINet) -> None:
    block = model.fine.net[0]
    z = torch.randn(1, 6, 5, 4, 5, generator=torch.Generator().manual_seed(8))
    x = F.relu(F.conv3d(z, block.conv1[0].weight, padding=(1, 2, 2)))
    assert x.shape[2] == 3
    x = F.relu(F.conv3d(x, block.conv2[0].weight, padding=1)) + x
    x = F.relu(F.conv3d(x, block.conv3[0].weight, padding=(0, 1, 1)))
    x = F.relu(F.conv3d(x, block.conv4[0].weight, padding=1)) + x
    with torch.no_grad():
        torch.testing.assert_close(block(z), x[:, :, 0], atol=1e-5, rtol=1e-5)


def test_dense_block_matches_description(model: OfficialESTINet) -> None:
    rdb = model.fine.net[1].sub1[0].RDB1
    x = torch.randn(1, 64, 4, 4, generator=torch.Generator().manual_seed(9))
    feats = [x]
    for m in range(1, 5):
        conv = getattr(rdb, f"conv{m}")[0]
        feats.append(F.relu(F.conv2d(torch.cat(feats, dim=1), conv.weight, conv.bias, padding=1)))
    x5 = F.conv2d(torch.cat(feats, dim=1), rdb.conv5[0].weight, rdb.conv5[0].bias, padding=1)
    with torch.no_grad():
        torch.testing.assert_close(rdb(x), x5 * 0.2 + x, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Windows
# ---------------------------------------------------------------------------------------------------------------


def test_official_windows_examples() -> None:
    assert official_windows(5) == [[0, 1, 0, 1, 2], [1, 0, 1, 2, 3], [0, 1, 2, 3, 4], [1, 2, 3, 4, 3], [2, 3, 4, 3, 4]]
    windows = official_windows(9)
    assert len(windows) == 9 and windows[0] == [0, 1, 0, 1, 2] and windows[-1] == [6, 7, 8, 7, 8]
    assert [w[2] for w in windows] == list(range(9))
    assert official_windows(2) == [[0, 1, 0, 1, 0], [1, 0, 1, 0, 1]]
    assert official_windows(1) == [[0, 0, 0, 0, 0]]
    with pytest.raises(ValueError, match="num_frames must be >= 1"):
        official_windows(0)
