"""`modelway doctor`: pre-flight checks of a config and of everything it points at.

Each check runs under a timeout and reports pass, warn or fail; nothing is changed
(the database is read, never migrated; local models are found, not loaded).
"""

from modelway.doctor.findings import Finding, Status
from modelway.doctor.run import run_doctor

__all__ = ["Finding", "Status", "run_doctor"]
