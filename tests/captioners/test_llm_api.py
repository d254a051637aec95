"""The vision-LLM captioner against a loopback OpenAI-compatible server, faults included."""

import base64
import io
import time

import pytest
from PIL import Image

from fake_openai import Fault, closed_port_url
from helpers import photo
from semcomp.api import ApiKeyRejected
from semcomp.captioners.base import OriginalRef
from semcomp.captioners.llm_api import LlmApiCaptioner, LlmApiParams
from semcomp.errors import ConfigError
from semcomp.reconstructors.image_api import ImageApiParams

KEY = "sk-proj-TESTKEY0123456789abcdefSECRET"
IMAGES = [photo(400, 300, seed) for seed in range(4)]
REFS = [
    OriginalRef(id=str(i), name=f"img{i}", category="c", source_path=f"{i}.png") for i in range(4)
]


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("TEST_OPENAI_KEY", KEY)


def captioner(server_url: str, **params) -> LlmApiCaptioner:
    defaults = {
        "base_url": server_url,
        "model": "vision-model",
        "api_key_env": "TEST_OPENAI_KEY",
        "timeout": 2.0,
        "backoff": 0.05,
        "max_attempts": 4,
        "max_side": 128,
    }
    return LlmApiCaptioner(LlmApiParams(**(defaults | params)), device="cpu", batch_size=4)


def test_captions_usage_cost_and_the_request(fake_openai):
    subject = captioner(
        fake_openai.base_url,
        price_per_million_input_tokens=2.5,
        price_per_million_output_tokens=10,
    )
    results = subject.caption(REFS, IMAGES)
    assert all(isinstance(r, list) and r[0].text.startswith("a photo") for r in results)
    meta = results[0][0].meta
    assert meta["input_tokens"] > 0 and meta["estimated_cost_usd"] > 0
    request = fake_openai.requests[0]
    assert request.headers["authorization"] == f"Bearer {KEY}"
    content = request.json["messages"][0]["content"]
    assert "DALL-E 2 would understand" in content[0]["text"]
    url = content[1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert max(sent.size) == 128
    assert request.json["max_completion_tokens"] == 300


def test_length_targeted_prompt(fake_openai):
    subject = captioner(fake_openai.base_url, prompt="max_words", max_words=12)
    subject.caption(REFS[:1], IMAGES[:1])
    assert "at most 12 words" in fake_openai.requests[0].json["messages"][0]["content"][0]["text"]
    with pytest.raises(ValueError, match="max_words"):
        LlmApiParams(model="m", prompt="max_words")


def test_transient_faults_are_retried(fake_openai):
    fake_openai.enqueue(
        Fault.rate_limit(retry_after=1),
        Fault.server_error(500),
        Fault.slow(3.0),  # beyond the 2 s timeout
        Fault.malformed_json(),
    )
    started = time.perf_counter()
    subject = captioner(fake_openai.base_url, concurrency=1, max_attempts=5)
    results = subject.caption(REFS[:1], IMAGES[:1])
    assert isinstance(results[0], list)
    assert len(fake_openai.requests) == 5
    assert time.perf_counter() - started >= 1.0  # waited for Retry-After


def test_refusals_and_empty_answers_are_failures_not_captions(fake_openai):
    fake_openai.enqueue(Fault.refusal(), Fault.empty())
    results = captioner(fake_openai.base_url, concurrency=1).caption(REFS[:3], IMAGES[:3])
    refused, empty, fine = results
    assert isinstance(refused, Exception) and "refused" in str(refused) and not refused.retryable
    assert isinstance(empty, Exception) and "empty answer" in str(empty)
    assert isinstance(fine, list)
    assert len(fake_openai.requests) == 3  # neither was retried


def test_unreachable_endpoint_gives_up_with_a_reason():
    results = captioner(closed_port_url(), max_attempts=2).caption(REFS[:1], IMAGES[:1])
    assert isinstance(results[0], Exception) and "APIConnectionError" in str(results[0])
    assert results[0].retryable


def test_invalid_key_stops_the_batch_with_one_redacted_message(fake_openai):
    fake_openai.api_key = "sk-the-right-key-0000"
    subject = captioner(fake_openai.base_url, concurrency=2)
    with pytest.raises(ApiKeyRejected) as raised:
        subject.caption(REFS * 5, IMAGES * 5)
    assert KEY not in str(raised.value) and "[REDACTED]" in str(raised.value)
    assert "TEST_OPENAI_KEY" in str(raised.value)
    assert len(fake_openai.requests) <= 2  # the other 18 were never sent


def test_concurrency_is_bounded(fake_openai):
    fake_openai.latency = 0.1
    captioner(fake_openai.base_url, concurrency=3).caption(REFS * 3, IMAGES * 3)
    assert fake_openai.max_inflight == 3


def test_missing_key_variable_is_a_config_error(monkeypatch, fake_openai):
    monkeypatch.delenv("TEST_OPENAI_KEY")
    with pytest.raises(ConfigError, match="TEST_OPENAI_KEY is not set"):
        captioner(fake_openai.base_url)


def in_time(work, seconds: float):
    """``work()``'s result, or a test failure if it takes longer than ``seconds`` (it runs
    in a daemon thread, so a request that never ends cannot hang the session)."""
    import threading

    got = []
    thread = threading.Thread(target=lambda: got.append(work()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s"
    return got[0]


def test_retry_after_is_capped_by_max_backoff_recorded_and_retryable(fake_openai):
    fake_openai.enqueue(*(Fault.rate_limit(retry_after=3600) for _ in range(4)))
    subject = captioner(fake_openai.base_url, concurrency=1, max_attempts=3, max_backoff=0.2)
    started = time.perf_counter()
    (failed,) = in_time(lambda: subject.caption(REFS[:1], IMAGES[:1]), 20)
    assert time.perf_counter() - started < 5
    assert isinstance(failed, Exception) and failed.retryable
    reason = str(failed)
    assert "gave up after 3 attempts" in reason and "RateLimitError" in reason
    assert "asked for up to 3600 s, capped at max_backoff = 0.2 s" in reason
    assert failed.detail["retry_after_s"] == 3600 and failed.detail["api_attempts"] == 3
    assert 0 < failed.detail["api_waited_s"] <= 0.5
    # one 429 left: the next item waits 0.2 s once, then its caption records the wait
    (fine,) = in_time(lambda: subject.caption(REFS[:1], IMAGES[:1]), 20)
    meta = fine[0].meta
    assert meta["api_attempts"] == 2 and meta["retry_after_s"] == 3600
    assert 0 < meta["api_waited_s"] <= 0.5


def test_a_trickling_answer_is_abandoned_at_the_total_deadline(fake_openai):
    """A byte every 0.5 s never trips a 1 s read timeout; the total deadline stops it."""
    fake_openai.enqueue(Fault.trickle(0.5), Fault.trickle(0.5))
    subject = captioner(fake_openai.base_url, concurrency=1, timeout=1.0, max_attempts=1)
    started = time.perf_counter()
    (failed,) = in_time(lambda: subject.caption(REFS[:1], IMAGES[:1]), 30)
    assert time.perf_counter() - started < 4
    assert isinstance(failed, Exception) and failed.retryable
    assert "no complete answer within timeout = 1 s" in str(failed)
    retried = captioner(fake_openai.base_url, concurrency=1, timeout=1.0, max_attempts=2)
    (fine,) = in_time(lambda: retried.caption(REFS[:1], IMAGES[:1]), 30)
    assert isinstance(fine, list) and fine[0].text.startswith("a photo")


def test_an_answer_past_max_response_bytes_is_a_settled_failure(fake_openai):
    fake_openai.enqueue(Fault.answer("word " * 400_000))  # a 2 MB body
    (failed,) = captioner(fake_openai.base_url).caption(REFS[:1], IMAGES[:1])
    assert isinstance(failed, Exception) and not failed.retryable
    assert "larger than max_response_bytes = 1,048,576 bytes" in str(failed)
    assert len(fake_openai.requests) == 1  # not asked (and paid for) again
    assert LlmApiParams(model="m").max_response_bytes == 1 << 20  # small for text
    assert ImageApiParams().max_response_bytes == 128 << 20  # generous for images


def test_a_caption_longer_than_max_tokens_could_produce_is_a_failure(fake_openai):
    fake_openai.enqueue(Fault.answer("a very long caption " * 100))  # 2,000 bytes
    (failed,) = captioner(fake_openai.base_url, max_tokens=20).caption(REFS[:1], IMAGES[:1])
    assert isinstance(failed, Exception) and not failed.retryable
    assert "longer than max_tokens = 20 tokens could produce (at most 640 bytes)" in str(failed)
    (fine,) = captioner(fake_openai.base_url, max_tokens=20).caption(REFS[:1], IMAGES[:1])
    assert isinstance(fine, list)


def test_every_string_from_the_api_is_redacted(fake_openai):
    """An endpoint echoing the key: captions, metadata and errors come back without it."""
    fake_openai.echo_key = True
    fake_openai.enqueue(Fault.refusal(f"not for {KEY}"), Fault.server_error(400))
    results = captioner(fake_openai.base_url, concurrency=1).caption(REFS[:3], IMAGES[:3])
    refused, bad_request, fine = results
    text = f"{refused} {refused.detail} {bad_request} {bad_request.detail} {fine[0]}"
    assert "asked by [REDACTED]" in fine[0].text and "[REDACTED]" in fine[0].meta["response_model"]
    assert "not for [REDACTED]" in str(refused) and "from [REDACTED]" in str(bad_request)
    assert KEY not in text


def test_a_body_without_a_length_is_cut_off_at_max_response_bytes():
    """A chunked answer (no Content-Length) is read up to the bound and no further."""
    import asyncio

    import httpx2 as httpx

    from semcomp.api import ResponseTooLarge, bounded_answers

    sent = []

    async def endless():
        for _ in range(1000):
            sent.append(1)
            yield b"x" * 1000

    def answer(request):
        assert request.headers["accept-encoding"] == "identity"
        return httpx.Response(200, content=endless())

    async def fetch():
        hooks = bounded_answers(httpx, 4096)
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer), event_hooks=hooks) as c:
            await c.get("http://api.invalid/v1/chat/completions")

    with pytest.raises(ResponseTooLarge, match="over 5,000 bytes"):
        asyncio.run(fetch())
    assert len(sent) == 5
