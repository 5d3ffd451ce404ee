"""Operations endpoints, metrics, auth, body limits, CORS, and the never-a-500-traceback guarantee."""

from __future__ import annotations

import httpx
import pytest
from fake_engine import FakeEngine

from rkio.api.app import create_app
from rkio.config import Settings

MSG = [{"role": "user", "content": "a b"}]


def client_for(engine: FakeEngine, **settings: object) -> httpx.AsyncClient:
    app = create_app(engine, Settings(**settings), manage_engine=False)  # type: ignore[arg-type]
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://rkio.test"
    )


async def test_health_ready_status(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    r = await client.get("/ready")
    assert r.status_code == 200 and r.json()["models"] == 2
    engine.quarantined = ("qwen", "llama")
    r = await client.get("/ready")
    assert r.status_code == 503 and r.json()["reason"] == "every model is quarantined"
    await engine.load("qwen")
    status = (await client.get("/rkio/status")).json()
    assert status["budget_bytes"] == 8 << 30 and status["loaded"][0]["name"] == "qwen"
    assert status["counters"]["evictions"] == 2
    engine.names = ()
    assert (await client.get("/ready")).json()["reason"] == "no models in the models directory"


async def test_metrics_report_requests_latency_tokens_and_engine(client: httpx.AsyncClient) -> None:
    await client.post("/v1/chat/completions", json={"model": "qwen", "messages": MSG, "stream": True})
    await client.post("/v1/chat/completions", json={"model": "nope", "messages": MSG})
    await client.post("/api/generate", json={"model": "qwen"})
    text = (await client.get("/metrics")).text
    assert 'rkio_http_requests_total{endpoint="/v1/chat/completions",status="200"} 1' in text
    assert 'rkio_http_requests_total{endpoint="/v1/chat/completions",status="404"} 1' in text
    assert 'rkio_time_to_first_token_seconds_count{model="qwen"} 1' in text
    assert 'rkio_inter_token_latency_seconds_count{model="qwen"} 1' in text
    assert 'rkio_completion_tokens_total{model="qwen"} 2' in text
    assert 'rkio_queue_wait_seconds_bucket{model="qwen",le="0.25"} 1' in text
    assert 'rkio_http_request_duration_seconds_count{endpoint="/v1/chat/completions"} 2' in text
    for name in (
        "rkio_queue_length 1",
        "rkio_memory_budget_bytes 8589934592",
        "rkio_engine_evictions_total 2",
        "rkio_engine_load_failures_total 1",
        'rkio_model_resident_bytes{model="qwen"} 1500000000',
    ):
        assert name in text
    assert all(line.startswith("#") or len(line.split(" ")) == 2 for line in text.splitlines())


async def test_api_key_guards_everything_but_health(engine: FakeEngine) -> None:
    async with client_for(engine, api_key="s3cret") as c:
        assert (await c.get("/health")).status_code == 200
        r = await c.get("/v1/models")
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        assert r.headers["www-authenticate"] == "Bearer"
        r = await c.get("/api/tags", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and isinstance(r.json()["error"], str)
        for path in ("/metrics", "/ready", "/rkio/status", "/openapi.json"):
            assert (await c.get(path)).status_code == 401
        ok = await c.get("/v1/models", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


async def test_body_limit_is_413_in_protocol_shape(engine: FakeEngine) -> None:
    big = "x" * 5000
    async with client_for(engine, max_body_bytes=1000) as c:
        r = await c.post(
            "/v1/chat/completions", json={"model": "qwen", "messages": [{"role": "user", "content": big}]}
        )
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        r = await c.post("/api/chat", json={"model": "qwen", "messages": [{"role": "user", "content": big}]})
        assert r.status_code == 413 and "limit" in r.json()["error"]

        async def chunked():  # no Content-Length: the limit applies while reading
            for _ in range(10):
                yield b"x" * 500

        r = await c.post("/api/generate", content=chunked())
        assert r.status_code == 413
    assert engine.requests == []


async def test_cors_only_when_configured(engine: FakeEngine, client: httpx.AsyncClient) -> None:
    preflight = {"Origin": "http://ui.local", "Access-Control-Request-Method": "POST"}
    r = await client.options("/v1/chat/completions", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    async with client_for(engine, cors_origins=("http://ui.local",)) as c:
        r = await c.options("/v1/chat/completions", headers=preflight)
        assert r.headers["access-control-allow-origin"] == "http://ui.local"


async def test_unknown_routes_and_methods_are_json_errors(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await client.get("/v1/chat/completions")
    assert r.status_code == 405 and "error" in r.json()
    r = await client.post("/api/nothing")
    assert r.status_code == 404 and isinstance(r.json()["error"], str)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat"])
async def test_unexpected_engine_bug_is_a_500_json_without_traceback(
    engine: FakeEngine, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(req: object) -> list[object]:
        raise ZeroDivisionError("division by zero deep inside")

    engine.script = broken  # type: ignore[assignment]
    async with client_for(engine) as c:
        r = await c.post(path, json={"model": "qwen", "messages": MSG, "stream": False})
    assert r.status_code == 500
    assert "ZeroDivisionError" not in r.text and "Traceback" not in r.text
    assert "server log" in r.text
    assert any(rec.exc_info and rec.exc_info[0] is ZeroDivisionError for rec in caplog.records)


async def test_access_log_line_per_request(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="rkio.access")
    await client.post("/v1/chat/completions", json={"model": "qwen", "messages": MSG})
    lines = [r.getMessage() for r in caplog.records if r.name == "rkio.access"]
    assert len(lines) == 1
    assert "status=200" in lines[0] and "model=qwen" in lines[0] and "completion_tokens=2" in lines[0]
    assert "outcome=ok" in lines[0] and "ttft_ms=" in lines[0]


async def test_ready_with_a_failing_engine_gives_a_fixed_reason_and_logs_the_detail(
        client: httpx.AsyncClient, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise OSError("/secret/models: permission denied")

    monkeypatch.setattr(engine, "models", broken)
    r = await client.get("/ready")
    assert r.status_code == 503
    assert r.json() == {"status": "not ready", "reason": "the engine cannot report its status"}
    assert "secret" not in r.text
    assert "/secret/models: permission denied" in caplog.text  # the operator still learns why


def test_histogram_buckets_are_cumulative_and_count_every_observation() -> None:
    from rkio.api.metrics import Histogram

    hist = Histogram("rkio_x_seconds", "x", buckets=(0.1, 1.0), label_names=("model",))
    for value in (0.05, 0.1, 0.5, 2.0):  # 0.1 is "le 0.1": bounds are inclusive
        hist.observe(value, "m")
    lines = list(hist.render())
    assert 'rkio_x_seconds_bucket{model="m",le="0.1"} 2' in lines
    assert 'rkio_x_seconds_bucket{model="m",le="1"} 3' in lines
    assert 'rkio_x_seconds_bucket{model="m",le="+Inf"} 4' in lines
    assert 'rkio_x_seconds_count{model="m"} 4' in lines and 'rkio_x_seconds_sum{model="m"} 2.65' in lines
