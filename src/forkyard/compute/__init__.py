"""Compute: servers, instances and their VMs, profiles, exec and files."""
