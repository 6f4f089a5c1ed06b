"""The one harness of the tests and the benchmarks (which import it from a checkout): real
server processes, models, endpoints, /proc readings. Helpers, not tests."""
