"""Everything that knows kombu's SQS internals lives in this package."""
