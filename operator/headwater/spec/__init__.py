"""The API: its vocabulary, models, rules and the CRDs generated from them. Pure."""
