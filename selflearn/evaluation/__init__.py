"""Evaluation shared by the tasks: metrics, the dialogue-level bootstrap, win/loss, judged replays.

`metrics` (scikit-learn where it has them), `bootstrap` (one resampling of
dialogues for every interval), `winloss` (one definition of a win and a
loss) and `replay` (held-out requests replayed through the simulator's
judge; the only module here that imports `selflearn.sim`).
"""
