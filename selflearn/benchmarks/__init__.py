"""The sections of `python -m selflearn.benchmark`: `encoder`, `retrieval`, `absorption` (each against a named peer)."""
