"""edged as a vision model for other programs: an OpenAI- and Ollama-compatible HTTP endpoint.

`chat` is the vocabulary (a request for edged, its limits, its errors), `openai_wire` and `ollama_wire`
translate the two JSON dialects to and from it, `images` turns what a request carries into the BGR
frame the model takes; all of them are pure functions. `answers` frames an answer in each dialect,
whole or streamed; `server` is the HTTP shell (aiohttp, on its own thread and event loop) that hands
each request to the scheduler as an image trigger.
"""
