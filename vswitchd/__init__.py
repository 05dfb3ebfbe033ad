"""vswitchd: a userspace VLAN-aware learning virtual switch."""

__version__ = "0.1.0"
