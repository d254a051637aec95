"""The image-API reconstructor against a loopback OpenAI-compatible server."""

import pytest

from fake_openai import Fault
from semcomp.reconstructors.image_api import ImageApiParams, ImageApiReconstructor


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-test-0000000000")


def reconstructor(url: str, **params) -> ImageApiReconstructor:
    defaults = {"base_url": url, "api_key_env": "TEST_OPENAI_KEY", "backoff": 0.05, "timeout": 2}
    return ImageApiReconstructor(ImageApiParams(**(defaults | params)), device="cpu")


def test_images_come_back_as_png_with_cost(fake_openai):
    results = reconstructor(fake_openai.base_url, price_per_image=0.04).reconstruct(
        ["a red apple", "a blue mug"], [0, 0]
    )
    assert all(r.png.startswith(b"\x89PNG") for r in results)
    assert results[0].meta["estimated_cost_usd"] == 0.04
    body = fake_openai.requests[0].json
    assert body["model"] == "gpt-image-2" and "response_format" not in body


def test_dall_e_asks_for_base64(fake_openai):
    reconstructor(fake_openai.base_url, model="dall-e-2", size="512x512").reconstruct(["x"], [0])
    assert fake_openai.requests[0].json["response_format"] == "b64_json"


def test_a_content_policy_refusal_is_a_settled_failure(fake_openai):
    refusal = Fault(
        "status",
        status=400,
        body={"error": {"message": "rejected by the safety system", "code": "content_policy"}},
    )
    fake_openai.enqueue(refusal)
    (result,) = reconstructor(fake_openai.base_url).reconstruct(["something"], [0])
    assert isinstance(result, Exception) and not result.retryable
    assert "safety system" in str(result)
    assert len(fake_openai.requests) == 1


def test_an_image_holding_the_key_is_stored_without_it(fake_openai):
    fake_openai.echo_key = True
    (result,) = reconstructor(fake_openai.base_url).reconstruct(["a red apple"], [0])
    assert b"sk-test-0000000000" not in result.png and result.png.startswith(b"\x89PNG")
    assert result.meta["revised_prompt"] == "a red apple for [REDACTED]"
