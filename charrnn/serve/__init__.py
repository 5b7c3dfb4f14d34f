"""charrnn serve: an OpenAI-compatible HTTP API and a web playground, many users batched (needs the serve extra)."""
