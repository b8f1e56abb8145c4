"""The GreedyLR benchmark study binary (`python -m schedulers.study`); see `schedulers.study.main`."""

from schedulers.study import main

if __name__ == "__main__":
  main.main()
