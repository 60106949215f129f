"""A fuzzer that drives a live worker subprocess with hostile SQS messages (issue 13, section 8)."""
