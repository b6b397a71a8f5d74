"""The outside world: the Kubernetes API, Events, HTTP delivery and Prometheus metrics."""
