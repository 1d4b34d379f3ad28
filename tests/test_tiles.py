import pytest
import torch
import torch.nn.functional as F

from ddbench.tiles import _squeeze_uneven, as_tiles, check_tiles_fit, cut_tiles, expand, grid_side, squeeze, tile_edges


def smooth_images(count: int, size: int) -> torch.Tensor:
    """Low-frequency images, so that down- then up-sampling loses little."""
    coords = torch.linspace(0, 1, size)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    phases = torch.rand(count, 3, 1, 1) * 6.28
    return torch.sin(2 * xx + phases) * torch.cos(1.5 * yy + phases)


def test_grid_side():
    assert [grid_side(n) for n in (1, 4, 9, 16)] == [1, 2, 3, 4]
    for bad in (0, 2, 3, 8):
        with pytest.raises(ValueError, match="perfect square"):
            grid_side(bad)
    assert check_tiles_fit(9, 32, 32) == 3  # the paper's N = 9 on CIFAR-10's 32 px: cells of 10, 11 and 11 px
    with pytest.raises(ValueError, match="under 2 px.*smaller N or a larger --image-size"):
        check_tiles_fit(81, 16, 16)


def test_an_uneven_grid_is_cut_at_k_times_side_over_g():
    assert tile_edges(32, 3) == [0, 10, 21, 32] and tile_edges(30, 3) == [0, 10, 20, 30]
    images = torch.arange(9, dtype=torch.float32).view(9, 1, 1, 1).expand(9, 2, 32, 32).contiguous()
    squeezed = squeeze(images, 3)  # constant images: each cell holds its own image's value exactly
    assert squeezed.shape == (1, 2, 32, 32)
    edges = tile_edges(32, 3)
    for r in range(3):
        for c in range(3):
            cell = squeezed[0, :, edges[r]:edges[r + 1], edges[c]:edges[c + 1]]
            torch.testing.assert_close(cell, torch.full_like(cell, 3 * r + c))
    torch.testing.assert_close(expand(squeezed, 3), images)  # and expand cuts the same cells back out
    with pytest.raises(ValueError, match="differ in size.*expand"):
        cut_tiles(squeezed, 3)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_the_uneven_path_on_an_even_grid_is_the_one_resize_path(mode):
    images = torch.rand(2 * 9, 3, 24, 24)
    grouped = images.view(2, 9, 3, 24, 24)
    torch.testing.assert_close(_squeeze_uneven(grouped, 3, mode), squeeze(images, 3, mode))


def test_squeeze_then_expand_on_an_uneven_grid_is_lossy_like_an_even_one():
    images = smooth_images(18, 32)
    restored = expand(squeeze(images, 3), 3)
    assert restored.shape == images.shape
    assert (restored - images).abs().mean() < 0.03
    squeezed = squeeze(images, 3).requires_grad_()
    expand(squeezed, 3).square().sum().backward()  # compensation optimises through it
    assert squeezed.grad is not None and squeezed.grad.abs().sum() > 0


@pytest.mark.parametrize("side", [1, 2, 3])
def test_squeeze_places_tiles_row_major(side):
    images = smooth_images(2 * side * side, 24)
    squeezed = squeeze(images, side)
    assert squeezed.shape == (2, 3, 24, 24)
    small = F.interpolate(images, size=(24 // side, 24 // side), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(cut_tiles(squeezed, side), small)
    if side == 2:  # tile 1 of image 0 is the top-right quarter
        torch.testing.assert_close(squeezed[0, :, :12, 12:], small[1])


def test_squeeze_then_expand_returns_the_tiles_within_interpolation_error():
    images = smooth_images(8, 32)
    restored = expand(squeeze(images, 2), 2)
    assert restored.shape == images.shape
    assert (restored - images).abs().mean() < 0.02
    noise = torch.rand(8, 3, 32, 32)
    assert (expand(squeeze(noise, 2), 2) - noise).abs().mean() > 0.1  # the test can tell lossy from lossless


def test_expand_is_differentiable():
    squeezed = smooth_images(1, 16).requires_grad_()
    expand(squeezed, 2).square().sum().backward()
    assert squeezed.grad is not None and squeezed.grad.abs().sum() > 0


def test_nearest_squeeze_keeps_one_pixel_of_each_block_and_bilinear_averages():
    images = torch.arange(4 * 16, dtype=torch.float32).view(4, 1, 4, 4)
    nearest = cut_tiles(squeeze(images, 2, "nearest"), 2)
    torch.testing.assert_close(nearest, images[:, :, ::2, ::2])  # the top-left pixel of each 2 x 2 block
    bilinear = cut_tiles(squeeze(images, 2), 2)
    assert not torch.allclose(bilinear, nearest)  # the default filters before it subsamples
    # a pattern alternating pixel by pixel is its mean to the antialiased shrink, one of its two values to nearest
    stripes = (torch.arange(8) % 2).float().expand(4, 3, 8, 8).contiguous()
    assert cut_tiles(squeeze(stripes, 2), 2).sub(0.5).abs().max() < 0.2
    assert torch.equal(cut_tiles(squeeze(stripes, 2, "nearest"), 2), torch.zeros(4, 3, 4, 4))
    assert torch.equal(as_tiles(stripes, 2, "nearest"), torch.zeros(4, 3, 8, 8))
    with pytest.raises(ValueError, match="bilinear, nearest"):
        squeeze(images, 2, "bicubic")
    for side in (1, 2):  # one tile a side shrinks nothing, but a misspelt mode is still named
        with pytest.raises(ValueError, match="'bicubic'.*bilinear, nearest"):
            squeeze(images, side, "bicubic")
        with pytest.raises(ValueError, match="'bicubic'.*bilinear, nearest"):
            as_tiles(images, side, "bicubic")
