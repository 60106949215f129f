"""Operating the queues, not running tasks: provisioning, dead letters, IAM policy, sweeping
monitoring litter, and Flower's Broker page. Workers never import this package (except
``provision.predefined_queues`` at configuration time, for production's predefined queues)."""
