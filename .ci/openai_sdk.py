"""The official `openai` Python package against a real `creditgate serve`
on the fixture provider: models, chat (whole and streamed, with a usage
chunk), image generation (url and b64_json), an error for a bad key and an
error for an empty wallet. Usage: openai_sdk.py BASE_URL KEY EMPTY_WALLET_KEY
"""

import base64
import pathlib
import sys

import openai

base, key, poor_key = sys.argv[1:4]
reply = (pathlib.Path(__file__).parent.parent / "fixtures/media/reply.txt").read_text()
client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)

models = [model.id for model in client.models.list()]
assert "gpt-4o-mini" in models and "z-image" in models, models

chat = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "hello"}],
    max_tokens=64,
)
assert chat.choices[0].message.content == reply, chat
assert chat.choices[0].finish_reason == "stop", chat
assert chat.usage is not None and chat.usage.total_tokens >= 0, chat

stream = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
    stream=True,
    stream_options={"include_usage": True},
)
chunks = list(stream)
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert text == reply, text
assert chunks[-1].choices == [] and chunks[-1].usage is not None, chunks[-1]

image = client.images.generate(model="z-image", prompt="a red fox", n=1, response_format="url")
assert image.data[0].url.startswith(f"{base}/v1/files/"), image
inline = client.images.generate(model="z-image", prompt="a red fox", response_format="b64_json")
assert len(base64.b64decode(inline.data[0].b64_json)) > 0

try:
    openai.OpenAI(base_url=f"{base}/v1", api_key="cg_live_nope", max_retries=0).models.list()
    raise AssertionError("a bad key was accepted")
except openai.AuthenticationError as err:
    assert err.status_code == 401 and err.code == "unauthorized", err

try:
    openai.OpenAI(base_url=f"{base}/v1", api_key=poor_key, max_retries=0).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
    )
    raise AssertionError("an empty wallet was charged")
except openai.APIStatusError as err:
    assert err.status_code == 402, err
    assert err.code == "insufficient_credits" and err.type == "insufficient_quota", err

print("openai SDK: models, chat, streamed chat, images, bad key, empty wallet: ok")
