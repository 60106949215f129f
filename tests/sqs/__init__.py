"""Tests of the SQS layer (taskapp/sqs).

Transport, delays, heartbeat, dead letters, claim check, shape, signing, ack and send batches,
DLQ tools, provisioning and policy.
"""
