"""Running a retrieval task: what "Retrieve Messages Now" and the scheduler call.

`runner.py` decides who runs what (the dispatcher, Retrieve Messages Now,
leases from `lease.py`); `run.py` owns a run's frame (load the task, call the protocol's runner, record
health and the "Incoming mail" log entry); `imap_run.py` retrieves every IMAP
folder; `pop3_run.py` the POP3 inbox, deleting only after a durable commit;
`store.py` commits each batch together with the cursor that covers it.
"""

from service.usecases.retrieval.runner import Runner, run_task

__all__ = ["Runner", "run_task"]
