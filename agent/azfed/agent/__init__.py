"""The public-cloud agent: collect (collectors) -> sample -> spool -> push, run by `app.Agent`."""
