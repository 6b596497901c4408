"""Bad input answers a Cloudinary-shaped 4xx, never a 500, and writes nothing outside the data dir."""
from __future__ import annotations

import io
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import cloudinary
import cloudinary.api
import cloudinary.uploader
import cloudinary.utils
import numpy as np
import pytest
import requests
from cloudinary.exceptions import BadRequest, Error
from PIL import Image

from cloudinary_emulator.testing import EmulatorProcess


def all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def signed_form(emu: EmulatorProcess, **params: str) -> dict[str, str]:
    """What a browser's signed upload form holds (signature computed by the SDK)."""
    params = {"timestamp": str(int(time.time())), **params}
    signature = cloudinary.utils.api_sign_request(params, emu.api_secret)
    return {**params, "signature": signature, "api_key": emu.api_key}


def assert_cloudinary_error(response: requests.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"]["message"], str)
    return body["error"]["message"]


def test_non_image_is_400(emu: EmulatorProcess, tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("not an image at all")
    with pytest.raises(BadRequest, match="Invalid image file"):
        cloudinary.uploader.upload(str(text))
    truncated = tmp_path / "half.jpg"
    truncated.write_bytes((Path(__file__).parent.parent / "fixtures/photos/coffee.jpg").read_bytes()[:2000])
    with pytest.raises(BadRequest, match="Invalid image file"):
        cloudinary.uploader.upload(str(truncated))


def test_oversized_file_is_400_with_the_sizes(emu: EmulatorProcess, max_file_size: int) -> None:
    noise = np.random.default_rng(1).integers(0, 255, (700, 700, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG")
    assert len(buffer.getvalue()) > max_file_size
    with pytest.raises(BadRequest, match=f"File size too large. Got [0-9]+. Maximum is {max_file_size}."):
        cloudinary.uploader.upload(buffer.getvalue())
    response = requests.post(f"{emu.base_url}/v1_1/demo/image/upload", data=signed_form(emu),
                             files={"file": ("big.png", buffer.getvalue())}, timeout=30)
    assert assert_cloudinary_error(response, 400).startswith("File size too large. Got ")


@pytest.mark.parametrize("public_id", [
    "../escape", "a/../../escape", "album//x", "a\\b", "a\x00b", "a?b", "a#b", "a&b", "a<b>",
    "a%2Fb", "x" * 300, "album/", " lead", "trail ", "/",
])
def test_bad_public_id_is_400(emu: EmulatorProcess, photos: Path, public_id: str) -> None:
    parent = emu.data_dir.parent
    before = all_files(parent)
    with pytest.raises(BadRequest, match="Invalid public_id"):
        cloudinary.uploader.upload(str(photos / "astronaut-small.jpg"), public_id=public_id)
    assert all_files(parent) == before
    assert not Path("/etc/passwd.jpg").exists()


def test_folders_and_odd_but_safe_ids_work(emu: EmulatorProcess, photos: Path) -> None:
    for public_id in ("album/photo1", "a/b/c-d_e", "x.y", "café/crème brûlée", "v2/w_3", ".dot"):
        result = cloudinary.uploader.upload(str(photos / "astronaut-small.jpg"),
                                            public_id=public_id)
        assert result["public_id"] == public_id
        assert requests.get(result["url"], timeout=10).status_code == 200
    for path in all_files(emu.data_dir):
        assert path.resolve().is_relative_to(emu.data_dir.resolve())
    # A leading slash is trimmed, as Cloudinary does.
    trimmed = cloudinary.uploader.upload(str(photos / "astronaut-small.jpg"), public_id="/etc/passwd")
    assert trimmed["public_id"] == "etc/passwd"


def test_truncated_multipart_is_4xx(emu: EmulatorProcess, photos: Path) -> None:
    boundary = "XyZboundary"
    fields = signed_form(emu)
    parts = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items())
    data = (photos / "astronaut-small.jpg").read_bytes()
    body = parts + (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                    f'filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n').encode() + data[:3000]
    # Cut off: no closing boundary. Content-Length matches what is sent, so the server must
    # judge the body itself.
    response = requests.post(f"{emu.base_url}/v1_1/demo/image/upload", data=body, timeout=10,
                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert 400 <= response.status_code < 500
    assert "message" in response.json()["error"]
    # A body shorter than its Content-Length, then a closed connection: no answer, no crash.
    host = urlparse(emu.base_url)
    with socket.create_connection((host.hostname, host.port), timeout=5) as sock:
        sock.sendall(b"POST /v1_1/demo/image/upload HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: 100000\r\n\r\n--b\r\n")
    assert emu.running
    assert requests.get(emu.base_url + "/_emulator/health", timeout=5).ok


def test_bad_signature_and_missing_fields(emu: EmulatorProcess, photos: Path) -> None:
    url = f"{emu.base_url}/v1_1/demo/image/upload"
    files = {"file": ("a.jpg", (photos / "astronaut-small.jpg").read_bytes())}
    form = signed_form(emu, public_id="x")
    message = assert_cloudinary_error(
        requests.post(url, data={**form, "public_id": "y"}, files=files, timeout=10), 401)
    assert message == f"Invalid Signature {form['signature']}. String to sign - 'public_id=y&timestamp={form['timestamp']}'."
    # No signature at all is an unsigned upload, which needs a preset.
    assert assert_cloudinary_error(requests.post(url, data={"timestamp": "1"}, files=files, timeout=10),
                                   400) == "Upload preset must be specified when using unsigned upload"
    assert_cloudinary_error(requests.post(url, data={"timestamp": "1", "signature": "x"}, files=files,
                                          timeout=10), 401)
    assert_cloudinary_error(requests.post(url, data={**form, "timestamp": "soon"}, files=files,
                                          timeout=10), 400)
    assert_cloudinary_error(requests.post(url, data=form, timeout=10), 400)  # no file
    assert_cloudinary_error(requests.post(url, data={**signed_form(emu), "file": "data:image/png;base64,!!"},
                                          timeout=10), 400)
    assert_cloudinary_error(requests.post(url, data={**signed_form(emu, type="secret")},
                                          files=files, timeout=10), 400)
    assert_cloudinary_error(requests.post(f"{emu.base_url}/v1_1/other/image/upload", data=form,
                                          files=files, timeout=10), 401)


def test_unknown_transformation_is_400(emu: EmulatorProcess, photos: Path) -> None:
    result = cloudinary.uploader.upload(str(photos / "astronaut-small.jpg"), public_id="t")
    base = result["url"].split("/v")[0]
    for transformation in ("e_sepia", "c_explode,w_10", "w_-5", "w_999999", "g_moon,c_fill,w_5,h_5"):
        response = requests.get(f"{base}/{transformation}/t.jpg", timeout=10)
        assert_cloudinary_error(response, 400)
    assert_cloudinary_error(requests.get(f"{base}/w_10/t.tiff", timeout=10), 400)
    assert_cloudinary_error(requests.get(f"{base}/nothing.jpg", timeout=10), 404)
    with pytest.raises(BadRequest):
        cloudinary.uploader.upload(str(photos / "astronaut-small.jpg"), eager="c_fill,w_10/exe")


def test_admin_bad_input(emu: EmulatorProcess) -> None:
    auth = (emu.api_key, emu.api_secret)
    base = f"{emu.base_url}/v1_1/demo/resources/image"
    assert_cloudinary_error(requests.get(f"{base}/tags/x?max_results=abc", auth=auth, timeout=10), 400)
    assert_cloudinary_error(requests.get(f"{base}/tags/x?next_cursor=%00%01", auth=auth, timeout=10), 400)
    assert_cloudinary_error(requests.delete(f"{base}/upload", auth=auth, data="{not json",
                                            headers={"Content-Type": "application/json"},
                                            timeout=10), 400)
    assert_cloudinary_error(requests.delete(f"{base}/upload", auth=auth, json={"public_ids": [1]},
                                            timeout=10), 400)
    assert_cloudinary_error(requests.get(f"{base}/upload/x", auth=("a", "b"), timeout=10), 401)
    assert_cloudinary_error(requests.get(f"{base}/upload/x", timeout=10), 401)
    assert_cloudinary_error(requests.get(f"{emu.base_url}/nowhere", timeout=10), 404)
    # Any unknown route, whatever the method, is Cloudinary's JSON 404 (the SDK's NotFound).
    assert_cloudinary_error(requests.put(f"{emu.base_url}/v1_1/demo/image/upload", timeout=10), 404)
    assert_cloudinary_error(requests.post(f"{base}/upload", auth=auth, timeout=10), 404)


def test_cors_preflight_and_cross_origin_upload(emu: EmulatorProcess, photos: Path) -> None:
    url = f"{emu.base_url}/v1_1/demo/image/upload"
    preflight = requests.options(url, timeout=10, headers={
        "Origin": "http://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-requested-with, content-type"})
    assert preflight.status_code in (200, 204)
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "x-requested-with" in preflight.headers["Access-Control-Allow-Headers"]
    response = requests.post(url, data=signed_form(emu, public_id="cors"), timeout=10,
                             files={"file": ("a.jpg", (photos / "astronaut-small.jpg").read_bytes())},
                             headers={"Origin": "http://app.example"})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    error = requests.post(url, data={}, headers={"Origin": "http://app.example"}, timeout=10)
    assert error.headers["Access-Control-Allow-Origin"] == "*"


def test_no_stray_files(emu: EmulatorProcess) -> None:
    """Everything the emulator wrote so far lives in its data dir's own folders."""
    allowed = {"originals", "derived", "tmp"}
    for path in all_files(emu.data_dir):
        rel = path.relative_to(emu.data_dir)
        assert rel.parts[0] in allowed or rel.name.startswith("index.sqlite3"), rel
    assert not any(os.scandir(emu.data_dir / "tmp"))


def test_image_over_the_megapixel_limit_is_400(emu: EmulatorProcess) -> None:
    buffer = io.BytesIO()
    Image.new("L", (5100, 5000)).save(buffer, "PNG")  # 25.5 MP of black compresses to little
    with pytest.raises(BadRequest, match="Resolution too large. Got 25500000 pixels. Maximum is 25000000"):
        cloudinary.uploader.upload(buffer.getvalue())
    assert emu.stats()["uploads"] == 0
