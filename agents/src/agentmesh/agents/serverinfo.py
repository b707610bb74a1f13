"""What a compatible model server says about itself: how many requests it runs at once.

llama.cpp's `llama-server` decodes a fixed number of requests in parallel
(its slots, `--parallel`) and queues the rest inside itself, out of reach
of the mesh's priorities and deadlines. It reports the number as
`total_slots` at `/props`. A worker on such a server caps its capacity to
it, so that work beyond what the server runs waits in the mesh instead.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

log = logging.getLogger(__name__)


def server_root(base_url: str) -> str:
    """The server's root URL: the base URL without a trailing `/v1`."""
    root = base_url.rstrip("/")
    return root.removesuffix("/v1")


def server_slots(base_url: str, api_key: str = "", timeout: float = 2.0) -> int | None:
    """The requests the server at `base_url` runs at once (llama.cpp's `total_slots`), or
    None when it does not say (another kind of server, or none answering)."""
    request = urllib.request.Request(f"{server_root(base_url)}/props")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            props = json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return None
    slots = props.get("total_slots") if isinstance(props, dict) else None
    if isinstance(slots, int) and not isinstance(slots, bool) and slots > 0:
        log.info("the model server runs %d requests at once", slots)
        return slots
    return None
