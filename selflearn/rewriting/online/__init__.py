"""Online rewriting: retrieval and ranking over a global and a personal index.

`mining` (rewrite pairs from reformulations), `index` (the global / personal
indexes and each request's candidates), `retrieval` (the dual encoder and
exact top-k search), `ranker` (features and the listwise model), `layers`
(decisions, fallback, the guard), `train` (the learned stages).
"""
