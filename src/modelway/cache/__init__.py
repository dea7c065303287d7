"""The response cache: exact and semantic lookups, memory and Redis backends."""
