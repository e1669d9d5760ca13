"""The faust worker: its composition root (`main.py`), the agents, the table, the web views, the sequencer."""
