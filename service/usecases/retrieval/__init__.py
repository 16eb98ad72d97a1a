"""Running a retrieval task: what "Retrieve Messages Now" and the scheduler call.

`run.py` owns a run's frame (load the task, call the protocol's runner, record
health and the "Incoming mail" log entry); `imap_run.py` retrieves every IMAP
folder; `pop3_run.py` the POP3 inbox, deleting only after a durable commit;
`store.py` commits each batch together with the cursor that covers it.
"""

from service.usecases.retrieval.run import run_task

__all__ = ["run_task"]
