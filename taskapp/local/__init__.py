"""The embedded local stack: moto as AWS, an SMTP sink, and the processes of ``taskapp dev``."""
