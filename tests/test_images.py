import numpy as np
import pytest
from PIL import Image

from ledi_kedro.core.data.images import DecodedImage, ImageSpec, Rejection, decode_image, fit_to_resolution
from tests.conftest import encode, rgb_image, write_image_tree


def test_every_bad_case_gets_its_reason(tmp_path):
    expected = write_image_tree(tmp_path)
    spec = ImageSpec(resolution=16, channels=3)
    for rel, reason in expected.items():
        out = decode_image((tmp_path / rel).read_bytes(), spec)
        if reason is None:
            assert isinstance(out, DecodedImage), (rel, out)
            assert out.pixels.shape == (3, 16, 16) and out.pixels.dtype == np.uint8
        else:
            assert isinstance(out, Rejection) and out.reason == reason, (rel, out)


def test_rgba_is_composited_on_white():
    img = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    img.putpixel((0, 0), (255, 0, 0, 255))
    out = decode_image(encode(img, "PNG"), ImageSpec(resolution=10, channels=3))
    assert isinstance(out, DecodedImage) and out.mode == "RGBA"
    assert out.pixels[:, 5, 5].tolist() == [255, 255, 255]
    assert out.pixels[:, 0, 0].tolist() == [255, 0, 0]


def test_sixteen_bit_is_scaled_to_eight():
    arr = np.full((12, 12), 65535, np.uint16)
    arr[0, 0] = 0
    out = decode_image(encode(Image.fromarray(arr), "PNG"), ImageSpec(resolution=12, channels=1))
    assert isinstance(out, DecodedImage)
    assert out.pixels[0, 5, 5] == 255 and out.pixels[0, 0, 0] == 0


def test_grey_to_rgb_and_rgb_to_grey():
    grey = Image.fromarray(np.full((10, 10), 77, np.uint8))
    out = decode_image(encode(grey, "PNG"), ImageSpec(resolution=10, channels=3))
    assert out.pixels.shape == (3, 10, 10) and (out.pixels == 77).all()
    red = Image.new("RGB", (10, 10), (255, 0, 0))
    out = decode_image(encode(red, "PNG"), ImageSpec(resolution=10, channels=1))
    assert out.pixels.shape == (1, 10, 10) and out.pixels[0, 0, 0] == 76  # ITU-R 601 luma of red


def test_centre_crop_then_resize():
    # 30 wide, 10 high: the middle 10x10 square is white, the sides black.
    arr = np.zeros((10, 30, 3), np.uint8)
    arr[:, 10:20] = 255
    out = fit_to_resolution(Image.fromarray(arr), ImageSpec(resolution=5, channels=3))
    assert out.shape == (3, 5, 5) and (out == 255).all()


def test_small_image_is_padded_centred():
    arr = np.full((28, 28), 200, np.uint8)
    out = fit_to_resolution(Image.fromarray(arr), ImageSpec(resolution=32, channels=1))
    assert out.shape == (1, 32, 32)
    assert (out[0, 2:30, 2:30] == 200).all()
    assert out[0, :2].sum() == 0 and out[0, 30:].sum() == 0 and out[0, :, :2].sum() == 0


def test_small_image_resize_mode_upsamples():
    arr = np.full((28, 28), 200, np.uint8)
    out = fit_to_resolution(Image.fromarray(arr), ImageSpec(resolution=32, channels=1, small_images="resize"))
    assert (out == 200).all()


def test_downsampling_is_antialiased():
    # A 1-pixel checkerboard averages to mid-grey when antialiased; point sampling would keep 0/255.
    arr = ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8)
    out = fit_to_resolution(Image.fromarray(arr), ImageSpec(resolution=8, channels=1))
    assert np.abs(out.astype(int) - 127).max() < 20


def test_content_hash_is_of_the_file_bytes():
    data = encode(rgb_image(12, 12), "PNG")
    out = decode_image(data, ImageSpec(resolution=12, channels=3))
    import hashlib

    assert out.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("kwargs, message", [
    ({"resolution": 0}, "resolution"), ({"channels": 2}, "channels"), ({"min_size": 0}, "min_size"),
    ({"small_images": "stretch"}, "small_images"), ({"pad_value": 300}, "pad_value"),
])
def test_spec_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImageSpec(**kwargs)
