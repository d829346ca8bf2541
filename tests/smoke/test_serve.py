"""``viewfinder serve`` through FastAPI's TestClient: every task's answers equal ``predict``'s,
the bad-upload corpus gets its status codes while the server keeps answering, batching, the API
key, the body limit and the page."""

from __future__ import annotations

import csv
import io
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import viewfinder
from tests.helpers import run_cli
from tests.smoke.conftest import FAST
from viewfinder.data.vqa import read_vqa
from viewfinder.serve.app import ServeSettings, create_app
from viewfinder.serve.server import load_runs


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def runs(demo_data, tmp_path_factory) -> dict[str, Path]:
    """One tiny run of each task (classify on the CSV layout, so ids name files)."""
    out = str(tmp_path_factory.mktemp("serve") / "runs")
    common = {"model": "cnn", "output_dir": out, "progress": False, **FAST}
    return {
        "classify": viewfinder.train("classify", data=str(demo_data.classify_csv), **common).path,
        "iqa": viewfinder.train("iqa", data=str(demo_data.iqa), **common).path,
        "vqa": viewfinder.train("vqa", data=str(demo_data.vqa), min_count=1, **common).path,
        "caption": viewfinder.train(
            "caption", data=str(demo_data.iqa), decoder="gru", decoder_dim=32, min_count=1,
            **common,
        ).path,
    }  # fmt: skip


@pytest.fixture(scope="module")
def client(runs):
    app = create_app(load_runs([f"{k}={v}" for k, v in runs.items()]), ServeSettings())
    with TestClient(app) as test_client:
        yield test_client


def _post(client, run: str, data: bytes, name: str = "x.png", **fields):
    return client.post(f"/v1/runs/{run}/predict", files={"image": (name, data)}, data=fields)


def test_classify_answers_equal_predict(client, runs, demo_data, tmp_path):
    rows = _rows(viewfinder.predict(runs["classify"], out=tmp_path / "s.csv", probabilities=True))
    paths = {r["id"]: demo_data.classify_csv / r["img_path"]
             for r in _rows(demo_data.classify_csv / "test.csv")}  # fmt: skip
    for row in rows[:6]:
        answer = _post(client, "classify", paths[row["id"]].read_bytes()).json()
        assert answer["task"] == "classify"
        assert answer["prediction"] == {"label": row["label"]}
        top = answer["top_k"][0]
        assert top["label"] == row["label"]
        assert top["probability"] == pytest.approx(float(row[f"prob_{row['label']}"]), abs=1e-5)
        assert len(answer["top_k"]) == 5 and answer["timing_ms"]["total"] > 0
    three = _post(client, "classify", paths[rows[0]["id"]].read_bytes(), top_k="3").json()
    assert len(three["top_k"]) == 3


def test_iqa_caption_and_vqa_answers_equal_predict(client, runs, demo_data, tmp_path):
    iqa = _rows(viewfinder.predict(runs["iqa"], out=tmp_path / "iqa.csv"))
    captions = _rows(viewfinder.predict(runs["caption"], out=tmp_path / "c.csv"))
    caption = {r["img_name"]: r for r in captions}
    test = _rows(demo_data.iqa / "test.csv")
    files = {r["img_name"]: demo_data.iqa / r["img_path"] for r in test}
    for row in iqa[:4]:
        data = files[row["img_name"]].read_bytes()
        mos = _post(client, "iqa", data).json()["prediction"]["mos"]
        assert mos == pytest.approx(float(row["mos"]), abs=1e-3)
        text = _post(client, "caption", data).json()["prediction"]["comments"]
        assert text == caption[row["img_name"]]["comments"]

    answers = _rows(viewfinder.predict(runs["vqa"], out=tmp_path / "v.csv"))
    questions = {q.id: q for q in read_vqa(str(demo_data.vqa / "test.csv")).train}
    for row in answers[:6]:
        q = questions[row["ID"]]
        reply = _post(client, "vqa", Path(q.path).read_bytes(), question=q.question).json()
        assert reply["prediction"] == {"answer": row["answer"]}


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels in a few bytes (a decompression bomb's header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))  # fmt: skip


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_bad_uploads_get_their_status_and_the_server_goes_on(client, demo_data):
    good = next((demo_data.classify_csv / "test").glob("*.png")).read_bytes()
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    jpeg = _encoded(photo, "JPEG")
    wide = Image.fromarray((rng.integers(0, 65535, (40, 40))).astype(np.uint16))
    corpus = {
        "empty body": (b"", 422, "empty file"),
        "text": (b"just some text, not pixels", 415, "not an image"),
        "truncated JPEG": (jpeg[: len(jpeg) // 2], 422, "truncated"),
        "20,000 x 20,000 bomb": (_png_header_only(20_000, 20_000), 422, "too large"),
        "12,000 x 12,000 (over --max-pixels)": (_png_header_only(12_000, 12_000), 422, "limit"),
        "16-bit PNG": (_encoded(wide, "PNG"), 200, None),
        "CMYK JPEG": (_encoded(photo.convert("CMYK"), "JPEG"), 200, None),
    }
    for name, (data, status, reason) in corpus.items():
        response = _post(client, "classify", data)
        assert response.status_code == status, name
        if reason:
            error = response.json()["error"]
            assert reason in error and "\n" not in error and "Traceback" not in error, name
        assert _post(client, "classify", good).status_code == 200, f"after {name}"
    missing = client.post("/v1/runs/classify/predict", files={"question": (None, "x")})
    assert missing.status_code == 422 and "'image'" in missing.json()["error"]
    no_question = _post(client, "vqa", good)
    assert no_question.status_code == 422 and "question" in no_question.json()["error"]
    not_form = client.post("/v1/predict", content=good, headers={"content-type": "image/png"})
    assert not_form.status_code == 415
    unknown = _post(client, "nope", good)
    assert unknown.status_code == 404 and "classify" in unknown.json()["error"]
    assert _post(client, "classify", good, top_k="0").status_code == 422


def test_body_limit_api_key_and_failed_batches(runs, demo_data):
    good = next((demo_data.classify_csv / "test").glob("*.png")).read_bytes()
    settings = ServeSettings(max_upload_mb=0.05, api_key="s3cret")
    served = load_runs([str(runs["classify"])])
    with TestClient(create_app(served, settings)) as client:
        name = served[0].name
        assert _post(client, name, good).status_code == 401
        assert client.get("/v1/runs").status_code == 401
        assert client.get("/health").status_code == 200  # liveness stays open
        key = {"X-API-Key": "s3cret"}
        ok = client.post("/v1/predict", files={"image": ("a.png", good)}, headers=key)
        assert ok.status_code == 200
        bearer = {"Authorization": "Bearer s3cret"}
        assert client.get("/v1/runs", headers=bearer).json()["runs"][0]["task"] == "classify"
        big = b"\x00" * 80_000
        over = client.post("/v1/predict", files={"image": ("a.png", big)}, headers=key)
        assert over.status_code == 413 and "limit" in over.json()["error"]

        def chunks():  # no Content-Length: counted as it streams
            yield b"--b\r\n" + b"\x00" * 60_000
            yield b"\x00" * 60_000

        form = {**key, "content-type": "multipart/form-data; boundary=b"}
        streamed = client.post("/v1/predict", content=chunks(), headers=form)
        assert streamed.status_code == 413

        real = served[0].predict
        served[0].predict = lambda *a: (_ for _ in ()).throw(RuntimeError("out of\nmemory"))
        failed = client.post("/v1/predict", files={"image": ("a.png", good)}, headers=key)
        assert failed.status_code == 500 and failed.json()["error"].endswith("out of memory")
        served[0].predict = real
        assert client.post("/v1/predict", files={"image": ("a.png", good)},
                           headers=key).status_code == 200  # fmt: skip


def test_concurrent_requests_are_batched(runs, demo_data):
    files = sorted((demo_data.classify_csv / "test").glob("*.png"))[:12]
    served = load_runs([str(runs["classify"])])
    settings = ServeSettings(max_batch=8, max_wait_ms=200)
    with TestClient(create_app(served, settings)) as client:
        alone = {f.name: client.post("/v1/predict", files={"image": ("a", f.read_bytes())}).json()
                 for f in files}  # fmt: skip
        results: dict[str, dict] = {}

        def send(path: Path) -> None:
            reply = client.post("/v1/predict", files={"image": ("a", path.read_bytes())})
            results[path.name] = reply.json()

        threads = [threading.Thread(target=send, args=(f,)) for f in files]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sizes = [r["timing_ms"]["batch_size"] for r in results.values()]
        assert max(sizes) > 1  # requests arriving together ran together
        for name, reply in results.items():  # and a batch answers as single requests do
            assert reply["prediction"] == alone[name]["prediction"]
            for a, b in zip(reply["top_k"], alone[name]["top_k"], strict=True):
                assert a["probability"] == pytest.approx(b["probability"], abs=2e-3)
        health = client.get("/health").json()["runs"][served[0].name]
        assert health["images"] == 24 and health["batches"] < 24


def test_runs_listing_and_page(client):
    listed = {r["name"]: r for r in client.get("/v1/runs").json()["runs"]}
    assert set(listed) == {"classify", "iqa", "vqa", "caption"}
    assert listed["vqa"]["inputs"] == ["image", "question"]
    assert listed["classify"]["classes"] and listed["classify"]["image_size"] == FAST["image_size"]
    assert "best_accuracy" in listed["classify"]["metrics"]
    page = client.get("/")
    assert page.status_code == 200 and 'id="drop"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a network


def test_serve_cli_rejects_bad_runs_in_one_line(tmp_path, runs):
    done = run_cli("serve", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert done.returncode == 2 and "run folder not found" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    twice = run_cli("serve", str(runs["iqa"]), str(runs["iqa"]), cwd=tmp_path)
    assert twice.returncode == 2 and "NAME=" in twice.stderr


def test_an_ensemble_of_runs_of_several_tasks_is_refused(runs):
    from viewfinder.errors import UserError

    with pytest.raises(UserError, match="only classification runs"):
        load_runs([f"mixed={runs['classify']},{runs['iqa']}"])
