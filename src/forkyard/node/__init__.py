"""The compute-node side: instance drivers, their storage and images, and the guest-agent client."""
