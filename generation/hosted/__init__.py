"""Hosted models: Black Forest Labs' API (FLUX1.1 [pro], Kontext, FLUX.2) as a second backend.

One job per module: `catalogue` (the API models, their fields, limits and prices), `validation`
(a person's input → `GenerationRequest`, called by `generation.request.build_request`),
`settings` (the key and base URL from the environment), `payload` (a request → the JSON body),
`client` (HTTP), `outcomes` (every documented status and error → an outcome and a sentence),
`credits` (the out-of-credits state), `samples` (a downloaded sample → PNG with Atelier's
metadata), `tasks` (what storage keeps of each task), `backend` (a job, end to end, resumable
from its stored tasks) and `cli` (`python -m generation --model flux-pro-1.1`).
This package never imports torch, diffusers, discord or storage.
"""
