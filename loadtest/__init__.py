"""Load testing (`make loadtest`, locust) and benchmarking (`make bench`, wrk) of the served models."""
