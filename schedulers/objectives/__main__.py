"""`python -m schedulers.objectives`."""

from common import app
from schedulers.objectives import main

app.run_tool(main.main)
