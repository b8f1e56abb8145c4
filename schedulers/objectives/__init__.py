"""GreedyLR on non-stationary objectives: the measurements behind `schedulers.optimizers.RULE`.

`python -m schedulers.objectives` trains each (setting, variant, seed) cell of
a grid with the repository's own binaries (`mql.main`, `nlirl.main`,
`schedulers.learned.dnn_main`, `schedulers.main`), skips finished cells and
resumes unfinished ones (the binaries resume), then writes a table of every
variant against the constant rate, paired over seeds.  `grid` says what each
setting and variant is, `readers` what is measured, `report` the statistics.
"""
