"""One file per upstream wire protocol, each behind the ``Provider`` interface."""
