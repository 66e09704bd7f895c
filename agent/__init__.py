"""`agent/` is the source folder of the `azfed` package (src layout), not a package itself."""

raise ImportError("'agent' is azfed's source folder, not a package: import azfed")
