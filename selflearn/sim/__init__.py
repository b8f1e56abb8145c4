"""The dialogue-log simulator and what only it knows.

`world` (shared error tables) and `users` (personas and habits), `channel`
(the assistant's pipeline with injected errors), `simulator` (dialogues and
user behaviour), `annotators` (simulated human labels), `judge` (whether a
changed request would have served its goal), `teaching` (simulated teaching
turns).  Models never import this package; task runners, the `simulate`
binary and evaluation with the judge do (`tests/test_import_rules.py`).
"""
