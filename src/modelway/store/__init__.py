"""State shared by requests and replicas: durable records (SQL) and counters (memory | Redis)."""
