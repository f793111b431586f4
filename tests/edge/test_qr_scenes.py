"""The corpus generator (edge/qr_scenes.py): deterministic, well-formed, and what it says it is."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest
import segno
import zxingcpp
from pyzbar import pyzbar

from edge import qr_scenes
from edge.qr_scenes import BAIT, DISTORTIONS, Kind


def digest(image: np.ndarray) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("size", qr_scenes.SIZES)
def test_every_kind_renders_a_bgr_frame_of_its_size(kind: Kind, size: tuple[int, int]) -> None:
    scene = qr_scenes.scene(kind, seed=3, index=1, size=size)
    assert scene.image.shape == (size[1], size[0], 3)
    assert scene.image.dtype == np.uint8
    assert scene.kind is kind
    if kind.has_code:
        assert scene.text is not None
        assert scene.quad is not None
        # The whole code lies inside the frame (a code cut by the frame's edge tests nothing).
        assert scene.quad.min() >= 0
        assert scene.quad[:, 0].max() <= size[0]
        assert scene.quad[:, 1].max() <= size[1]
        assert scene.module_px > 1.0
    else:
        assert scene.text is None
        assert scene.quad is None


def test_the_same_seed_gives_the_same_pixels_and_another_index_others() -> None:
    for kind in (Kind.MIXED, Kind.GLARE, Kind.EMPTY, Kind.FAKE_FINDER):
        a = qr_scenes.scene(kind, seed=7, index=2)
        b = qr_scenes.scene(kind, seed=7, index=2)
        assert digest(a.image) == digest(b.image)
        assert a.text == b.text
        assert digest(qr_scenes.scene(kind, seed=7, index=3).image) != digest(a.image)
        assert digest(qr_scenes.scene(kind, seed=8, index=2).image) != digest(a.image)


def test_any_frame_can_be_regenerated_alone() -> None:
    listed = list(qr_scenes.corpus(5, per_kind=2, kinds=(Kind.TILTED, Kind.NOISE), sizes=[(640, 480)], empty=1, bait=1))
    alone = qr_scenes.scene(Kind.NOISE, seed=5, index=1)
    assert [s.name for s in listed if s.name == alone.name]
    (same,) = (s for s in listed if s.name == alone.name)
    assert digest(same.image) == digest(alone.image)


def test_the_corpus_lists_each_distortion_at_each_size_then_empty_and_bait_frames() -> None:
    names = [s.name for s in qr_scenes.corpus(1, per_kind=2, kinds=DISTORTIONS[-2:], empty=2, bait=1)]
    assert len(names) == len(set(names)) == len(qr_scenes.SIZES) * (2 * 2 + 2 + len(BAIT))
    assert names[:4] == [f"{k.value}-640x480-000{i}" for k in DISTORTIONS[-2:] for i in (0, 1)]
    assert "dark_mode-1280x720-0001" in names
    assert "fake_finder-640x480-0000" in names
    assert "empty-1280x720-0001" in names


def test_token_texts_look_like_tokens_and_fit_version_6_or_7_at_m() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        text = qr_scenes.token_text(rng)
        assert text.startswith("CE1")
        assert 147 <= len(text) <= 178
        assert set(text[3:]) <= set(qr_scenes.TOKEN_ALPHABET)
        code = segno.make_qr(text, error="m", boost_error=False)
        assert code.version in (6, 7)
        assert code.error == "M"


def test_a_given_text_replaces_the_random_one_and_nothing_else() -> None:
    text = "CE1" + "A" * 150
    given = qr_scenes.scene(Kind.CLEAN, seed=2, index=4, text=text)
    drawn = qr_scenes.scene(Kind.CLEAN, seed=2, index=4)
    assert given.text == text != drawn.text
    assert np.allclose(given.quad, drawn.quad)


def test_the_product_barcode_is_a_real_ean13() -> None:
    digits = [4, 0, 0, 6, 3, 8, 1, 3, 3, 3, 9, 3, 1]  # a valid EAN-13 (check digit 1)
    bits = qr_scenes._ean13_bits(digits)
    assert len(bits) == 95
    assert bits[:3] == [True, False, True]
    # Drawn and read back by a decoder of every symbology: the bait is what it claims to be.
    read = []
    for index in range(4):
        frame = qr_scenes.scene(Kind.BARCODE, index=index).image
        read += [s.type for s in pyzbar.decode(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))]
    assert "EAN13" in read


def test_fake_finder_patterns_fool_a_detector_but_hold_no_code() -> None:
    """zxing-cpp takes the three squares for a code (and fails to read it): real bait."""
    seen = 0
    for index in range(6):
        frame = qr_scenes.scene(Kind.FAKE_FINDER, index=index).image
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        results = zxingcpp.read_barcodes(gray, return_errors=True)
        assert not [r for r in results if r.valid and r.format == zxingcpp.BarcodeFormat.QRCode]
        seen += bool(results)
    assert seen >= 2
