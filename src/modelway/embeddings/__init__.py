"""Sentence embeddings computed in process: the numpy encoder and its request batcher."""
