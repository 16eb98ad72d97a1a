"""Reading the local mailbox from the command line: folders, messages, export."""
