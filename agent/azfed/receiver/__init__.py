"""The local receiver: agent reports in, Gnocchi measures and Nova metadata out.

Pipeline: report (app.py) -> validate (validate.py) -> dedupe (store.py) -> write (sinks/).
"""
