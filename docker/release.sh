#!/bin/sh
# The compose stack's release step: the Procfile's `release` role, preceded by creating the
# bucket (on AWS the bucket belongs to the infrastructure, so the Procfile does not create it).
set -eu
taskapp aws bucket
taskapp db upgrade
taskapp queues provision
