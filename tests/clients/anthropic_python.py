"""Anthropic's Python SDK against a llamaport server (URL in argv[1]), with its default options; prints what it saw as JSON."""
# The 1.x SDK has no sampling parameters any more; greedy decoding (the same answer twice) goes through extra_body.
import json
import sys

import anthropic

client = anthropic.Anthropic(base_url=sys.argv[1], api_key="unused", max_retries=0)
seen = {}

seen["models"] = [model.id for model in client.models.list()]
seen["retrieved"] = client.models.retrieve("demo").type

message = client.messages.create(
    model="demo", max_tokens=5, extra_body={"temperature": 0}, messages=[{"role": "user", "content": "Tell me a story"}]
)
seen["text"] = message.content[0].text
seen["usage"] = {"input": message.usage.input_tokens, "cached": message.usage.cache_read_input_tokens, "output": message.usage.output_tokens}

with client.messages.stream(
    model="demo", max_tokens=5, extra_body={"temperature": 0}, messages=[{"role": "user", "content": "Tell me a story"}]
) as stream:
    started = None
    for event in stream:
        if event.type == "message_start":
            started = event.message.usage.input_tokens + (event.message.usage.cache_read_input_tokens or 0)
    final = stream.get_final_message()
seen["streamed"] = {"text": final.content[0].text, "started_prompt": started, "output": final.usage.output_tokens}

try:
    client.messages.create(
        model="demo",
        max_tokens=5,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                ],
            }
        ],
    )
    seen["image"] = "accepted"
except anthropic.BadRequestError as error:
    seen["image"] = {"status": error.status_code, "message": error.body["error"]["message"]}

print(json.dumps(seen))
