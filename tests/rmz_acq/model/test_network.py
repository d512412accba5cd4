from __future__ import annotations

import pytest
import torch

from rmz_acq.model.network import ConvGRU, RecurrentMZ, grow_depth, grow_width


def _model(depth: int = 3, norm: str = "none") -> RecurrentMZ:
    torch.manual_seed(0)
    return RecurrentMZ(base_channels=4, depth=depth, norm=norm).eval()  # type: ignore[arg-type]


def test_forward_is_the_sequence_of_steps_then_decode() -> None:
    model = _model()
    frames = torch.randn(2, 3, 32, 40)
    dpm = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]])
    with torch.inference_mode():
        whole = model(frames, dpm)
        state = model.init_state(2, 32, 40)
        for t in range(3):
            state = model.step(frames[:, t : t + 1], dpm[:, t], state)
        stepped = model.decode(state)
    assert whole.shape == (2, 1, 32, 40)
    torch.testing.assert_close(whole, stepped)
    assert [h.shape[1] for h in state.hidden] == [4, 8, 16]
    assert state.hidden[2].shape[-2:] == (8, 10)


def test_dpm_and_order_change_the_output() -> None:
    model = _model()
    frames = torch.randn(1, 2, 32, 32)
    with torch.inference_mode():
        a = model(frames, torch.tensor([[1.0, -1.0]]))
        b = model(frames, torch.tensor([[2.0, -1.0]]))
        c = model(frames.flip(1), torch.tensor([[-1.0, 1.0]]))
    assert not torch.allclose(a, b)
    assert not torch.allclose(a, c)  # recurrent: order matters (training shuffles)


def test_no_normalisation_makes_the_output_independent_of_crop_size() -> None:
    # The design choice that keeps inference on full frames consistent with
    # training on crops: away from the border, the output of a crop equals
    # the same region of the full-frame output.
    model = _model(depth=3)
    frames = torch.randn(1, 2, 192, 192)
    dpm = torch.tensor([[0.5, -1.5]])
    radius = model.receptive_radius()
    with torch.inference_mode():
        full = model(frames, dpm)
        crop = model(frames[..., 32:160, 32:160], dpm)
    inner = slice(radius - 32 + 8, 128 - (radius - 32) - 8) if radius > 32 else slice(8, 120)
    torch.testing.assert_close(
        crop[..., inner, inner], full[..., 32:160, 32:160][..., inner, inner], atol=1e-5, rtol=1e-4
    )


def test_batch_norm_variant_uses_running_statistics_at_inference() -> None:
    model = _model(norm="batch")
    frames = torch.randn(1, 1, 32, 32)
    with torch.inference_mode():
        alone = model(frames, torch.zeros(1, 1))
        with_others = model(torch.cat([frames, 5 * torch.randn(3, 1, 32, 32)]), torch.zeros(4, 1))
    torch.testing.assert_close(alone, with_others[:1])


def test_conv_gru_state_stays_bounded() -> None:
    torch.manual_seed(1)
    gru = ConvGRU(channels=3)
    h = torch.zeros(1, 3, 8, 8)
    with torch.no_grad():
        for _ in range(20):
            h = gru(10 * torch.randn(1, 3, 8, 8), h)
    assert h.abs().max() < 1.0


@pytest.mark.parametrize(
    ("frames", "dpm", "fragment"),
    [
        (torch.randn(1, 2, 30, 32), torch.zeros(1, 2), "multiple of 4"),
        (torch.randn(1, 2, 32, 32), torch.zeros(1, 3), "dpm_um"),
        (torch.randn(2, 32, 32), torch.zeros(2), "frames must be"),
    ],
)
def test_shape_errors_state_expected_and_actual(
    frames: torch.Tensor, dpm: torch.Tensor, fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment):
        _model()(frames, dpm)


def test_grown_network_starts_as_the_smaller_one_away_from_the_border() -> None:
    small = _model(depth=2)
    grown = grow_depth(small, 4).eval()
    assert grown.config.depth == 4 and grown.channels == (4, 8, 16, 32)
    frames = torch.rand(1, 2, 96, 96)
    dpm = torch.tensor([[0.5, -1.5]])
    with torch.inference_mode():
        state = small.init_state(1, 96, 96)
        for t in range(2):
            state = small.step(frames[:, t : t + 1], dpm[:, t], state)
        assert state.skips is not None and state.skips[-1].min() > -1.0  # within the lift
        before, after = small(frames, dpm), grown(frames, dpm)
    r = small.receptive_radius()
    inner = (..., slice(r, -r), slice(r, -r))
    torch.testing.assert_close(after[inner], before[inner], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(after, before)  # the border differs: zero padding is not lifted


def test_grown_scales_start_silent_but_learn() -> None:
    grown = grow_depth(_model(depth=2), 3).train()
    block = grown.decoders[1].layers[0]  # reads [up-sampled new scale, old deepest skip]
    new_channels = grown.channels[2]
    assert torch.count_nonzero(block.weight[:, :new_channels]) == 0
    out = grown(torch.rand(2, 2, 32, 32), torch.tensor([[1.0, -1.0], [0.0, 2.0]]))
    out.square().mean().backward()
    assert block.weight.grad is not None
    assert torch.count_nonzero(block.weight.grad[:, :new_channels]) > 0


def test_growing_needs_a_deeper_target_and_no_batch_norm() -> None:
    with pytest.raises(ValueError, match="deeper than 3 scales, not 3"):
        grow_depth(_model(depth=3), 3)
    with pytest.raises(ValueError, match="without normalisation"):
        grow_depth(_model(depth=2, norm="batch"), 3)


def test_widened_network_starts_as_the_narrower_one_everywhere() -> None:
    narrow = _model(depth=3)
    wide = grow_width(narrow, 6).eval()
    assert wide.channels == (6, 12, 24) and wide.config.base_channels == 6
    frames = torch.rand(1, 3, 64, 64)
    dpm = torch.tensor([[0.5, -1.5, 2.0]])
    with torch.inference_mode():
        before, after = narrow.eval()(frames, dpm), wide(frames, dpm)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)  # the border included


def test_widened_channels_start_silent_but_learn() -> None:
    wide = grow_width(_model(depth=2), 6).train()
    head = wide.head.weight  # reads the first scale's 6 channels, 4 of them old
    assert torch.count_nonzero(head[:, 4:]) == 0
    gates = wide.recurrent[0].input_gates.weight  # forget half, then candidate half
    assert torch.count_nonzero(gates[:4, 4:]) == 0 and torch.count_nonzero(gates[6:10, 4:]) == 0
    out = wide(torch.rand(2, 2, 32, 32), torch.tensor([[1.0, -1.0], [0.0, 2.0]]))
    out.square().mean().backward()
    assert head.grad is not None and torch.count_nonzero(head.grad[:, 4:]) > 0


def test_widening_needs_more_channels_and_no_batch_norm() -> None:
    with pytest.raises(ValueError, match="more than 4 base channels, not 4"):
        grow_width(_model(depth=2), 4)
    with pytest.raises(ValueError, match="without normalisation"):
        grow_width(_model(depth=2, norm="batch"), 6)
