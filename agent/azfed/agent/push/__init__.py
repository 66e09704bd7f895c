"""Push: batcher -> spool -> pusher. Nothing leaves the spool before the receiver has it."""
