"""Wire types and encoders: OpenAI and Anthropic schemas, SSE, error bodies."""
