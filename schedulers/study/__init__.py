"""The fair GreedyLR benchmark study: tasks, arms, runner, statistics, report, plots.

`python -m schedulers.study --config=schedulers.study.configs.default[:smoke] --workdir=DIR`
runs it (resumable cell by cell); `results/` holds the committed full study
(`results.json`, `curves.npz`, `report.md`, `plots/`).  Modules:

* `tasks`, `arms`: the six offline tasks and the arms (optimizer row x method);
* `runner`: one compiled, vmapped program per (task, arm); the tuning protocol;
* `stats`, `report`: paired statistics and the analysis of the records;
* `markdown`, `plots`, `outputs`: the report, its figures, and writing them;
* `curves`: regenerates a committed study's evaluation curves bitwise;
* `main`: the binary.
"""
