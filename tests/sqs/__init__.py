"""Tests of the SQS layer (taskapp/sqs): transport, delays, heartbeat, dead letters, claim check, shape, signing, batching, DLQ tools, provisioning and policy."""
