"""Wire-faithful fake upstreams (Anthropic, OpenAI, Ollama) served as real HTTP servers on 127.0.0.1."""
